"""cffi builder for ``mpcai._native`` (run at install time, never at import).

The cdef is read from the declarations in ``mpcai_native.h`` between the
``BEGIN CDEF`` and ``END CDEF`` markers; the sources are every ``*.c`` file in
this directory.  Not shipped in the wheel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = HERE / "mpcai_native.h"


def _cdef_text() -> str:
    text = HEADER.read_text()
    start = text.index("/* BEGIN CDEF */") + len("/* BEGIN CDEF */")
    end = text.index("/* END CDEF */")
    # The constants below the CDEF block are read from C when the module is
    # built ("..."), so Python never keeps a second copy of their values.
    constants = "".join(f"#define {name} ...\n" for name in _CONSTANTS)
    return text[start:end] + constants


_CONSTANTS = ("MPCAI_FIELD_P", "MPCAI_SEED_BYTES", "MPCAI_MAX_THREADS", "MPCAI_PRG_MAX_WORDS",
              "MPCAI_SKETCH_MAX_DIM", "MPCAI_SKETCH_MAX_ROWS", "MPCAI_DGAUSS_MAX_TABLE",
              "MPCAI_DGAUSS_MAX_GUIDE_BITS", "MPCAI_FWHT_MAX_LEN",
              "MPCAI_PACK_MAX_COUNT")


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    # No -march=native: the wheel must run on any x86-64 / aarch64 CPU.
    # SIMD paths are compiled per function (target attributes) and chosen
    # at run time from CPU features.
    args = ["-O3", "-std=c11", "-fno-strict-aliasing", "-pthread"]
    extra = os.environ.get("MPCAI_EXTRA_CFLAGS")
    if extra:
        args += extra.split()
    return args


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source(
    "mpcai._native",
    '#include "mpcai_native.h"\n',
    sources=sorted(str(p.relative_to(HERE.parent)) for p in HERE.glob("*.c")),
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=_compile_args(),
    extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
