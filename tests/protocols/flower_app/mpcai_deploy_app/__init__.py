"""A Flower app running mpcai's secure aggregation (SecAggStrategy + secagg_mod); the
deployment-engine test (tests/protocols/test_flower_deployment.py) starts it with
``flwr run``."""
