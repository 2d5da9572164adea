"""POSTs one body many times over keep-alive connections with Python's
http.client, which writes the whole request before it reads the answer.

argv: host port key count rate_per_second connections body_file
      [path (/modules/liveness)] [content_type (application/json)]
Prints one JSON object: statuses seen, transport errors (by exception
name), 429s without Retry-After, and how often a connection had to be
reopened because the server had closed it.
"""
import http.client
import json
import sys
import threading
import time

host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count, rate, conns = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
with open(sys.argv[7], "rb") as f:
    body = f.read()
path = sys.argv[8] if len(sys.argv) > 8 else "/modules/liveness"
ctype = sys.argv[9] if len(sys.argv) > 9 else "application/json"

lock = threading.Lock()
out = {"statuses": {}, "errors": {}, "no_retry_after": 0, "reopened": 0}
start = time.monotonic()


def worker(first):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(first, count, conns):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        reopened = conn.sock is None and i >= conns
        try:
            conn.request(
                "POST",
                path,
                body=body,
                headers={"x-api-key": key, "content-type": ctype},
            )
            res = conn.getresponse()
            res.read()
            status, retry_after = res.status, res.getheader("retry-after")
            err = None
        except Exception as e:  # a transport error: what this test counts
            conn.close()
            status, retry_after, err = None, None, type(e).__name__
        with lock:
            if reopened:
                out["reopened"] += 1
            if err:
                out["errors"][err] = out["errors"].get(err, 0) + 1
            else:
                out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
                if status == 429 and not retry_after:
                    out["no_retry_after"] += 1
    conn.close()


threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out))
