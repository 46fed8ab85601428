"""mpcai: secure multiparty computation for decentralised AI."""
