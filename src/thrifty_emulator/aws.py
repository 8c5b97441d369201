"""What every AWS JSON service shares, as the emulator needs it: SigV4 verification and the
binary event-stream framing of streamed answers.

- Signature Version 4 (AWS IAM User Guide, "Signature Version 4 for API requests" and "Create a
  signed AWS API request"): the `Authorization` header is `AWS4-HMAC-SHA256
  Credential=KEY/YYYYMMDD/REGION/SERVICE/aws4_request, SignedHeaders=h1;h2, Signature=HEX`, over
  `X-Amz-Date`; a request more than 15 minutes off the server's clock is refused. The signature
  is recomputed with botocore's own signer (`botocore.auth.SigV4Auth`) over exactly the headers
  the request says it signed and its path as sent, so the emulator checks what AWS checks
  without hand-rolled crypto.
- Errors: the `x-amzn-errortype` header names the error, the body is `{"message": ...}` (how
  botocore's rest-json parser reads them); SigV4 failures are the common errors of the AWS API
  references ("Common Errors": IncompleteSignature 400, MissingAuthenticationToken 403, an
  unknown key 403, a wrong signature 403).
- Event streams (`application/vnd.amazon.eventstream`; "Event stream encoding" in the Amazon
  Transcribe and S3 Select developer guides): each message is a 12-byte prelude (total length,
  headers length, big-endian uint32) with its CRC32, the headers (name length byte, name, value
  type 7 = string, uint16 length, value), the payload and a CRC32 of everything before it.
  botocore has a decoder (`botocore.eventstream`) and no encoder; this is the encoder, and the
  tests decode what it writes with botocore's.
"""

from __future__ import annotations

import hmac
import re
import struct
import time
import zlib
from calendar import timegm
from dataclasses import dataclass
from typing import Iterable, Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from thrifty_emulator.keys import KeySpec
from thrifty_emulator.wire import WireError

EVENT_STREAM = b"application/vnd.amazon.eventstream"
MAX_SKEW_S = 15 * 60
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\s*")
_STRING = 7


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a signature covers: the method, the path exactly as sent (percent-encoded), the query,
    the headers (lower-case names) and the body."""

    method: str
    raw_path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


def error(status: int, error_type: str, message: str, kind: str = "invalid_request") -> WireError:
    return WireError(status, kind, message, code=error_type, headers={"x-amzn-errortype": error_type})


def _signature_error(message: str) -> WireError:
    return error(403, "InvalidSignatureException", message, "authentication")


def verify_sigv4(req: SignedRequest, keys: Iterable[KeySpec], service: str, *, now: float | None = None) -> KeySpec:
    """The key pair that signed `req`; raises the AWS error otherwise."""
    auth = req.headers.get("authorization", "")
    if not auth:
        raise error(403, "MissingAuthenticationTokenException", "Missing Authentication Token", "authentication")
    m = _AUTH.fullmatch(auth)
    if m is None:
        raise error(400, "IncompleteSignatureException", "Authorization header requires 'Credential', "
                    "'SignedHeaders' and 'Signature' parameters (AWS4-HMAC-SHA256). Authorization=" + auth[:40])
    credential, signed, signature = m.groups()
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise error(400, "IncompleteSignatureException", f"Credential should be scoped to a valid region and "
                    f"service, and end in aws4_request: {credential!r}")
    key_id, day, region, signed_service, _ = scope
    if signed_service != service:
        raise _signature_error(f"Credential should be scoped to correct service: '{service}'.")
    names = signed.split(";")
    stamp = req.headers.get("x-amz-date", "")
    if "host" not in names or "x-amz-date" not in names or not stamp:
        raise error(400, "IncompleteSignatureException", "Signed headers must include host and x-amz-date")
    try:
        signed_at = timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise error(400, "IncompleteSignatureException", f"Invalid X-Amz-Date {stamp!r}") from None
    if stamp[:8] != day:
        raise _signature_error(f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                               f"from HTTP: '{day}' != '{stamp[:8]}'")
    clock = time.time() if now is None else now
    if abs(clock - signed_at) > MAX_SKEW_S:
        raise _signature_error(f"Signature expired: {stamp} is now earlier than "
                               f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(clock - MAX_SKEW_S))}")
    pair = next((k for k in keys if k.key == key_id and k.secret is not None), None)
    if pair is None:
        raise error(403, "UnrecognizedClientException", "The security token included in the request is invalid.",
                    "authentication")
    expected = _expected_signature(req, names, pair, region, service, stamp)
    if not hmac.compare_digest(expected, signature):
        raise _signature_error("The request signature we calculated does not match the signature you provided. "
                               "Check your AWS Secret Access Key and signing method. Consult the service "
                               "documentation for details.")
    return pair


def _expected_signature(req: SignedRequest, names: list[str], pair: KeySpec, region: str, service: str,
                        stamp: str) -> str:
    headers = {n: req.headers.get(n, "") for n in names}
    url = f"http://{headers['host']}{req.raw_path}" + (f"?{req.query}" if req.query else "")
    request = AWSRequest(method=req.method, url=url, data=req.body, headers=headers)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(pair.key, pair.secret or "", req.headers.get("x-amz-security-token")),
                       service, region)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


# --- event streams ----------------------------------------------------------------------------

def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + struct.pack("!BH", _STRING, len(v)) + v


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack("!II", 12 + len(head) + len(payload) + 4, len(head))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + head + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event(event_type: str, payload: bytes) -> bytes:
    return frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                 payload)


def exception(error_type: str, payload: bytes) -> bytes:
    return frame({":exception-type": error_type, ":content-type": "application/json",
                  ":message-type": "exception"}, payload)
