"""An independent mDNS client (python-zeroconf) for atbox's discovery test.

Run inside a network namespace by tests/it/mdns_netns.rs:

    mdns_client.py resolve atbox.local [--timeout 10]   -> {"name": ..., "addresses": [...]}
    mdns_client.py browse _atproto-pds._tcp [--timeout 10]
        -> {"services": [{"name", "server", "port", "addresses", "txt"}]}

Prints one JSON object on stdout; exits 1 if nothing was found in time.
"""

import argparse
import json
import sys
import time

from zeroconf import AddressResolver, ServiceBrowser, ServiceInfo, Zeroconf


def resolve(zc, name, timeout):
    host = name if name.endswith(".") else name + "."
    resolver = AddressResolver(host)
    if not resolver.request(zc, timeout * 1000):
        return None
    return {"name": name, "addresses": sorted(resolver.parsed_addresses())}


def browse(zc, service_type, timeout):
    full = service_type.rstrip(".") + ".local."
    found = {}

    class Listener:
        def add_service(self, zc, type_, name):
            found[name] = type_

        def update_service(self, zc, type_, name):
            found[name] = type_

        def remove_service(self, zc, type_, name):
            found.pop(name, None)

    ServiceBrowser(zc, full, Listener())
    deadline = time.time() + timeout
    while not found and time.time() < deadline:
        time.sleep(0.2)
    services = []
    for name, type_ in sorted(found.items()):
        info = ServiceInfo(type_, name)
        if not info.request(zc, 3000):
            continue
        services.append(
            {
                "name": name,
                "server": info.server,
                "port": info.port,
                "addresses": sorted(info.parsed_addresses()),
                "txt": {
                    k.decode(): (v.decode() if v is not None else None)
                    for k, v in info.properties.items()
                },
            }
        )
    return {"services": services} if services else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["resolve", "browse"])
    parser.add_argument("name")
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args()
    zc = Zeroconf()
    try:
        if args.mode == "resolve":
            result = resolve(zc, args.name, args.timeout)
        else:
            result = browse(zc, args.name, args.timeout)
    finally:
        zc.close()
    if result is None:
        print(json.dumps({"error": f"nothing found for {args.name}"}))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
