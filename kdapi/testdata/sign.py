#!/usr/bin/env python3
"""Independent implementation of KooDrive's app authentication signature.

Written from the documentation text (docs/koodrive-api.md section 2b, and the
"App-based Authentication Generation Rule" pages it cites), not from kdapi's Go
code, so that the Go signer can be checked against a second reading of the
same rules. Python 3 standard library only.

    CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQueryString \n
                       CanonicalHeaders \n SignedHeaders \n HashedRequestPayload
    StringToSign     = "HMAC-SHA256" \n HexEncode(SHA256(CanonicalRequest))
    Signature        = HexEncode(HMAC-SHA256(AppSecret, StringToSign))
    Authorization    = HMAC-SHA256 AppId=<id>,SignedHeaders=<h1;h2>,Signature=<sig>

Readings taken where the documentation is silent or ambiguous (each is pinned
by the vectors, so a change shows up as a test failure):
  * CanonicalURI: the absolute path of the URL, percent-decoded, split at '/',
    with empty ("redundant") and '.'/'..' ("relative") parts removed; each part
    is URI-encoded (only A-Z a-z 0-9 - _ . ~ kept) and a '/' is appended.
  * CanonicalQueryString: the query is decoded as a form would be ('+' is a
    space); names and values are URI-encoded as above and the encoded pairs
    are sorted by name, then by value, in character-code order.
  * HashedRequestPayload: lower-case hex SHA-256 of the body bytes (the hash of
    the empty string when there is no body). The stored docs are cut off here.
  * CanonicalHeaders: lower-case names, values with surrounding white space
    removed, sorted by name, one "name:value\n" line each.

Usage:
  sign.py vectors FILE   recompute every vector in FILE, print a JSON list of
                         {name, canonical_request, string_to_sign, signature,
                         authorization}
  sign.py gen FILE       recompute and write the "expected" block of every
                         vector back into FILE
  sign.py sign           read one request (or a list of them) as JSON from
                         stdin: {"method", "url", "app_id", "user_id", "date",
                         "secret", "body", "host" (optional, default: the
                         URL's host)}, sign it over host;x-date;x-user-id and
                         print {canonical_request, string_to_sign, signature,
                         authorization} (or a list of them)
"""

import hashlib
import hmac
import json
import sys
import urllib.parse

ALGORITHM = "HMAC-SHA256"
UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def uri_encode(raw: bytes) -> str:
    """Percent-encode every byte except the RFC 3986 unreserved ones, %XY upper case."""
    out = []
    for b in raw:
        if b in UNRESERVED:
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def canonical_uri(raw_path: str) -> str:
    decoded = urllib.parse.unquote_to_bytes(raw_path)
    parts = []
    for part in decoded.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    if not parts:
        return "/"
    return "/" + "/".join(uri_encode(p) for p in parts) + "/"


def canonical_query(raw_query: str) -> str:
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if item == "":
            continue
        name, _, value = item.partition("=")
        # Form decoding: '+' is a space, then percent-decoding to raw bytes.
        name_b = urllib.parse.unquote_to_bytes(name.replace("+", " "))
        value_b = urllib.parse.unquote_to_bytes(value.replace("+", " "))
        pairs.append((uri_encode(name_b), uri_encode(value_b)))
    pairs.sort()
    return "&".join(n + "=" + v for n, v in pairs)


def canonical_headers(headers):
    hs = sorted((name.lower(), value.strip()) for name, value in headers)
    block = "".join(n + ":" + v + "\n" for n, v in hs)
    signed = ";".join(n for n, _ in hs)
    return block, signed


def sign_request(method, url, headers, body: bytes, secret: str, app_id: str):
    parts = urllib.parse.urlsplit(url)
    block, signed = canonical_headers(headers)
    canonical = "\n".join([
        method.upper(),
        canonical_uri(parts.path),
        canonical_query(parts.query),
        block,
        signed,
        hashlib.sha256(body).hexdigest(),
    ])
    string_to_sign = ALGORITHM + "\n" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    signature = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    authorization = "%s AppId=%s,SignedHeaders=%s,Signature=%s" % (ALGORITHM, app_id, signed, signature)
    return {
        "canonical_request": canonical,
        "string_to_sign": string_to_sign,
        "signature": signature,
        "authorization": authorization,
    }


def sign_vector(v):
    req = v["request"]
    return sign_request(req["method"], req["url"], req["headers"], req.get("body", "").encode("utf-8"),
                        v["secret"], v["app_id"])


def sign_one(req):
    host = req.get("host") or urllib.parse.urlsplit(req["url"]).netloc
    headers = [("Host", host), ("X-Date", req["date"]), ("X-User-Id", req["user_id"])]
    return sign_request(req["method"], req["url"], headers, req.get("body", "").encode("utf-8"),
                        req["secret"], req["app_id"])


def main(argv):
    if len(argv) == 3 and argv[1] in ("vectors", "gen"):
        with open(argv[2], encoding="utf-8") as f:
            doc = json.load(f)
        if argv[1] == "vectors":
            out = []
            for v in doc["vectors"]:
                r = sign_vector(v)
                r["name"] = v["name"]
                out.append(r)
            json.dump(out, sys.stdout, indent=1)  # ASCII output: no locale dependence
            return 0
        for v in doc["vectors"]:
            v["expected"] = sign_vector(v)
        with open(argv[2], "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")
        return 0
    if len(argv) == 2 and argv[1] == "sign":
        doc = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        out = [sign_one(req) for req in doc] if isinstance(doc, list) else sign_one(doc)
        json.dump(out, sys.stdout)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
