"""Character classes and regular expressions of the RFC 3261 section 25 grammar."""
from __future__ import annotations

import re

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = "A-Za-z0-9\\-.!%*_+`'~"
TOKEN = re.compile(f"[{TOKEN_CHARS}]+")

# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#           "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
_WORD = TOKEN_CHARS + "()<>:\\\\\"/\\[\\]?{}"
# callid = word [ "@" word ]
CALL_ID = re.compile(f"[{_WORD}]+(?:@[{_WORD}]+)?")

# unreserved = alphanum / mark ; mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
_UNRESERVED = "A-Za-z0-9\\-_.!~*'()"
_ESCAPED = "%[0-9A-Fa-f]{2}"
# user = 1*( unreserved / escaped / user-unreserved ); user-unreserved = & = + $ , ; ? /
USER = re.compile(f"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
USER_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD = re.compile(f"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
PASSWORD_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,")
# paramchar = param-unreserved / unreserved / escaped ; param-unreserved = [ ] / : & + $
PARAM = re.compile(f"(?:[{_UNRESERVED}\\[\\]/:&+$]|{_ESCAPED})+")
PARAM_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/:&+$")
# hname/hvalue = *( hnv-unreserved / unreserved / escaped ); hnv-unreserved = [ ] / ? : + $
HNV = re.compile(f"(?:[{_UNRESERVED}\\[\\]/?:+$]|{_ESCAPED})*")
HNV_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/?:+$")

# host = hostname / IPv4address / IPv6reference (underscores tolerated in names)
HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_.])?")
IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")

# SIP-URI fast path: scheme ":" [userinfo "@"] hostport uri-parameters [headers]
SIP_URI = re.compile(
    r"(?P<scheme>[sS][iI][pP][sS]?):"
    r"(?:(?P<userinfo>[^@]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.\-]*)"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?P<params>(?:;[^;?]*)*)"
    r"(?:\?(?P<headers>.*))?",
    re.DOTALL,
)

# Via: sent-protocol LWS sent-by *( SEMI via-params ), with SWS around "/" and ":"
VIA = re.compile(
    rf"[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.\-]*)(?:[ \t]*:[ \t]*(\d{1,5}))?"
    r"[ \t]*(;.*)?",
    re.DOTALL,
)

# generic-param = token [ EQUAL gen-value ] ; gen-value = token / host / quoted-string
# quoted-string contents as "unrolled loop": one alternation per escape, not per character
QUOTED_TEXT = r'[^"\\]*(?:\\.[^"\\]*)*'
GEN_VALUE = re.compile(rf'\[[0-9A-Fa-f:.]+\]|[{TOKEN_CHARS}]+|"{QUOTED_TEXT}"', re.DOTALL)
QUOTED = re.compile(f'"({QUOTED_TEXT})"', re.DOTALL)
QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)

HEADER_NAME = re.compile(f"[{TOKEN_CHARS}]+")
DIGITS = re.compile(r"[0-9]+")

LWS = " \t"
