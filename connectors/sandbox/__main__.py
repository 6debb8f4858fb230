import argparse
import logging

from . import make_server

parser = argparse.ArgumentParser(description="Integration Hub sandbox: emulators of every external system")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8765)
parser.add_argument("--verbose", action="store_true")
args = parser.parse_args()
logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s sandbox %(message)s")
server = make_server(args.host, args.port)
logging.getLogger("sandbox").info("listening on %s with %s", server.url, ", ".join(sorted(server.emulators)))
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
