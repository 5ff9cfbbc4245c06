#!/usr/bin/env python3
"""A demo TCP backend for ./run.sh: answers each line with '<label>: <line>'."""
import socketserver
import sys


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(f"{self.server.label}: ".encode() + line)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    host, port, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with Server((host, port), Handler) as srv:
        srv.label = label
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
