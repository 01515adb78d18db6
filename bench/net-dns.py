#!/usr/bin/env python3
"""A toy of the embedded DNS for bench/net-policy.sh (the real one will be
hickory-server in the network helper): answers A queries from a fixed table,
refuses every other name, and before answering an allowed name for a box with
an egress policy, adds the answer to that box's nft set with a timeout of at
least the TTL, so the box can connect only to what it just resolved.

usage: net-dns.py LISTEN_IP RECORDS POLICIES
  RECORDS   name=ip,name=ip,...             (what the resolver knows)
  POLICIES  box_ip=set_name:allowed_name+allowed_name,...
            (boxes not listed have no egress policy: every known name)
"""
import socket
import struct
import subprocess
import sys

TTL = 30


def parse_query(data):
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    pos, labels = 12, []
    while data[pos]:
        n = data[pos]
        labels.append(data[pos + 1 : pos + 1 + n].decode().lower())
        pos += 1 + n
    qtype = struct.unpack("!H", data[pos + 1 : pos + 3])[0]
    return qid, ".".join(labels), qtype, data[12 : pos + 5]


def answer(qid, question, rcode, ip=None):
    flags = 0x8180 | rcode  # response, recursion desired + available
    out = struct.pack("!HHHHHH", qid, flags, 1, 1 if ip else 0, 0, 0) + question
    if ip:
        out += struct.pack("!HHHIH", 0xC00C, 1, 1, TTL, 4) + socket.inet_aton(ip)
    return out


def main():
    listen, records, policies = sys.argv[1], sys.argv[2], sys.argv[3]
    table = dict(r.split("=") for r in records.split(",") if r)
    policy = {}
    for p in filter(None, policies.split(",")):
        box, rest = p.split("=")
        set_name, names = rest.split(":")
        policy[box] = (set_name, set(names.split("+")))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((listen, 53))
    print("ready", flush=True)
    while True:
        data, (src, port) = s.recvfrom(512)
        try:
            qid, name, qtype, question = parse_query(data)
        except (IndexError, struct.error):
            continue
        known = name in table
        if src in policy:
            set_name, allowed = policy[src]
            known = known and name in allowed
        ip = table[name] if known and qtype == 1 else None  # other types: no data
        if ip and src in policy:
            subprocess.run(["nft", "add", "element", "inet", "a3s", policy[src][0],
                            f"{{ {ip} timeout {max(TTL, 60)}s }}"], check=True)
        s.sendto(answer(qid, question, 0 if known else 3, ip), (src, port))


main()
