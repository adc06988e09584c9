"""Many artists on one backend: a tokens file of hashed tokens with names.

``serve --tokens-file F`` reads ``F``, one artist token a line::

    # name:scheme:hash
    alice:sha256:<64 hex digits: sha256 of the token>
    bob:scrypt:<salt hex>:<hash hex>          (scrypt n=2**14, r=8, p=1, 32 bytes)

or the same as JSON: ``{"alice": "sha256:<hex>", "bob": ["sha256:<hex>", ...]}``. An artist
may have several tokens (one per machine, say). The file holds no token itself, only hashes;
``python -m backend tokens add NAME --file F`` makes a token, adds its hash and prints the
token once. The server notices a changed file within a second and reloads it without a
restart; a file it cannot read or parse keeps the last good list in force (and is logged)
so that a half-saved edit locks nobody out. A missing file means no artist gets in.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from backend.storage import atomic_path

log = logging.getLogger("sam3d.artists")

#: What an artist's name may be: it appears in logs and job records.
ARTIST_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: scrypt's cost for hashes this module writes (about 50 ms and 16 MiB per check).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: Seconds between looks at the tokens file's size and modification time.
RELOAD_CHECK_S = 1.0


class TokensFileError(ValueError):
    """A tokens file that cannot be used, with the line at fault."""


@dataclass(frozen=True)
class TokenHash:
    """One artist's token, hashed: ``sha256:<hex>`` or ``scrypt:<salt hex>:<hash hex>``."""

    artist: str
    scheme: str
    salt: bytes
    digest: bytes

    def matches(self, token: str) -> bool:
        if self.scheme == "sha256":
            given = hashlib.sha256(token.encode()).digest()
        else:
            given = hashlib.scrypt(
                token.encode(), salt=self.salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
            )
        return hmac.compare_digest(given, self.digest)


def hash_token(token: str, scheme: str = "sha256") -> str:
    """The hash of ``token`` as a tokens file writes it (tokens are 256 random bits, so
    sha256 is enough; scrypt is accepted for tokens people chose themselves)."""
    if scheme == "sha256":
        return "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt:{salt.hex()}:{digest.hex()}"


def parse_hash(artist: str, text: str, where: str) -> TokenHash:
    if not ARTIST_NAME_RE.fullmatch(artist):
        raise TokensFileError(
            f"{where}: {artist!r} is not an artist name (letters, digits, . _ @ -; "
            "at most 64 characters)"
        )
    scheme, _, rest = text.strip().partition(":")
    try:
        if scheme == "sha256" and len(rest) == 64:
            return TokenHash(artist, scheme, b"", bytes.fromhex(rest))
        if scheme == "scrypt":
            salt, _, digest = rest.partition(":")
            if salt and len(digest) == 64:
                return TokenHash(artist, scheme, bytes.fromhex(salt), bytes.fromhex(digest))
    except ValueError:
        pass
    raise TokensFileError(
        f"{where}: the hash of {artist!r} is not 'sha256:<64 hex>' or 'scrypt:<salt hex>:<64 hex>'"
    )


def parse_tokens(text: str, source: str = "tokens file") -> list[TokenHash]:
    """The hashes in a tokens file's ``text`` (lines or JSON, see the module doc)."""
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TokensFileError(f"{source}: not valid JSON: {exc}") from None
        out = []
        for artist, hashes in data.items():
            for h in [hashes] if isinstance(hashes, str) else list(hashes):
                out.append(parse_hash(str(artist), str(h), source))
        return out
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        artist, sep, rest = line.partition(":")
        if not sep:
            raise TokensFileError(f"{source}, line {n}: expected 'name:sha256:<hex>'")
        out.append(parse_hash(artist.strip(), rest, f"{source}, line {n}"))
    return out


class TokenBook:
    """The artists a tokens file lets in; ``artist_for(token)`` answers who a token is.

    Thread-safe. Tokens that matched once are remembered by their sha256 (a scrypt check
    costs ~50 ms), and forgotten when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._hashes: list[TokenHash] = []
        self._known: dict[bytes, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self.error: str | None = None
        self.reload(strict=True)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self, strict: bool = False) -> None:
        """Read the file again. ``strict``: raise ``TokensFileError`` when it is unusable
        (at start); otherwise keep the last good list and remember why in ``error``."""
        stamp = self._stat()
        try:
            if stamp is None:
                raise FileNotFoundError(f"{self.path} does not exist")
            hashes = parse_tokens(self.path.read_text(encoding="utf-8"), str(self.path))
        except (OSError, TokensFileError) as exc:
            if strict:
                raise TokensFileError(str(exc)) from None
            if stamp is None:  # removed: nobody gets in any more
                hashes = []
            else:
                if self.error != str(exc):
                    log.error("tokens file not reloaded, the last good one stays: %s", exc)
                self.error = str(exc)
                self._stamp = stamp
                return
        self._hashes, self._known, self._stamp, self.error = hashes, {}, stamp, None

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_S:
            return
        self._checked = now
        if self._stat() != self._stamp:
            self.reload()

    def artist_for(self, token: str) -> str | None:
        """The artist whose token this is, or None."""
        if not token:
            return None
        with self._lock:
            self._maybe_reload()
            key = hashlib.sha256(token.encode()).digest()
            if key in self._known:
                return self._known[key]
            for h in self._hashes:
                if h.matches(token):
                    self._known[key] = h.artist
                    return h.artist
        return None

    def artists(self) -> list[str]:
        with self._lock:
            return sorted({h.artist for h in self._hashes})


# -- python -m backend tokens ---------------------------------------------------------------
def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        return [
            f"{h.artist}:{h.scheme}:" + (f"{h.salt.hex()}:" if h.salt else "") + h.digest.hex()
            for h in parse_tokens(text, str(path))
        ]
    parse_tokens(text, str(path))  # refuse to add to a broken file
    return text.splitlines()


def _write_lines(path: Path, lines: list[str]) -> None:
    """Replace ``path`` atomically, readable by its owner only (``atomic_path``'s temporary
    file is made 0600 by ``mkstemp``, and the rename keeps that mode)."""
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


def cmd_tokens(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        lines = _read_lines(path)
    except (OSError, TokensFileError) as exc:
        print(f"error [bad_tokens_file]: {exc}", file=sys.stderr)
        return 2
    if args.action == "list":
        for artist in sorted({h.artist for h in parse_tokens("\n".join(lines))}):
            print(artist)
        return 0
    if not ARTIST_NAME_RE.fullmatch(args.name or ""):
        print(
            f"error [bad_options]: {args.name!r} is not an artist name "
            "(letters, digits, . _ @ -; at most 64 characters)",
            file=sys.stderr,
        )
        return 2
    if args.action == "remove":
        kept = [ln for ln in lines if ln.partition(":")[0].strip() != args.name]
        _write_lines(path, kept)
        print(f"removed {len(lines) - len(kept)} token(s) of {args.name}", file=sys.stderr)
        return 0
    token = secrets.token_urlsafe(32)
    _write_lines(path, lines + [f"{args.name}:{hash_token(token, args.scheme)}"])
    print(f"added a token for {args.name} to {path}; it is shown only this once:", file=sys.stderr)
    print(token)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tokens", help="artists' access tokens for serve --tokens-file")
    t.add_argument("action", choices=("add", "remove", "list"))
    t.add_argument("name", nargs="?", help="the artist (add, remove)")
    t.add_argument("--file", required=True, help="the tokens file (created when missing)")
    t.add_argument(
        "--scheme", choices=("sha256", "scrypt"), default="sha256", help="how the token is hashed"
    )
    t.set_defaults(func=cmd_tokens)
