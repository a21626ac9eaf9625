#!/usr/bin/env python3
"""Write a synthetic call export for benchmarks: N rows, distinct call IDs.

    python3 scripts/gen_calls.py 1000000 calls-1m.csv
"""
import sys

def main():
    n, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "w", newline="") as f:
        f.write("callId,userId,tenantId,agentId,startTime,queue\n")
        chunk = []
        for i in range(n):
            chunk.append(f"{1652317325 + i // 1000}-{i % 1000:03d}{i // 1000000},1652268429538866153,"
                         f"202205116084,{100 + i % 50},2026-11-23T08:{i // 60 % 60:02d}:{i % 60:02d},"
                         f"{('sales', 'support', 'billing')[i % 3]}\n")
            if len(chunk) == 10000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))

if __name__ == "__main__":
    main()
