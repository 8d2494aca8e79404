"""Build the pex PEX that Pants 2.17 runs, from PyPI's pex wheel, byte-for-byte reproducibly.

Usage: build_pex.py WHEEL WHEEL_SHA256 OUT  (prints the sha256 and size of OUT)

A PEX is a zip with a __main__.py. Sorted, uncompressed members with fixed timestamps and modes
make the bytes depend on the wheel alone (not on zlib, umask or clock), so every machine builds the
file whose sha256 and size pants.toml declares under [pex-cli].known_versions.
"""
import hashlib
import io
import os
import sys
import zipfile

wheel, wheel_sha256, out = sys.argv[1:]
main = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pex_main.py"), "rb").read()
members = [("__main__.py", main.replace(b"@WHEEL_SHA256@", wheel_sha256.encode()))]
with zipfile.ZipFile(wheel) as src:
    members += [("wheel/" + n, src.read(n)) for n in sorted(src.namelist()) if not n.endswith("/")]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
    for name, data in members:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        z.writestr(info, data)
data = b"#!/usr/bin/env python3\n" + buf.getvalue()
with open(out, "wb") as f:
    f.write(data)
print(hashlib.sha256(data).hexdigest(), len(data))
