#!/usr/bin/env python3
"""End-to-end scenario against a running PDS, driven by the `atproto` Python SDK
(MarshalX). See README.md in this folder.

    python tests/python/scenario.py --pds http://127.0.0.1:PORT \
        --plc http://127.0.0.1:PORT2 [--handle-domain .test] [--invite CODE]

stdout: one JSON line per step, {"step": "...", "ok": true[, "info": {...}]} or
{"step": "...", "ok": false, "error": "..."}, then "N passed, M failed" on its
own line. Exit 0 iff every step passed (1 otherwise, 2 on bad arguments).
"""

import argparse
import hashlib
import json
import os
import re
import secrets
import struct
import sys
import traceback
import typing as t
import zlib
from urllib.parse import urlsplit

import httpx
import libipld
from atproto import CAR, Client, models
from atproto_client.exceptions import BadRequestError, RequestErrorBase, UnauthorizedError
from atproto_core.did_doc import DidDocument
from atproto_crypto.verify import verify_signature

POST = 'app.bsky.feed.post'
TID_RE = re.compile(r'^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$')


class AssertionFailed(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionFailed(msg)


def eq(actual: t.Any, expected: t.Any, what: str) -> None:
    if actual != expected:
        raise AssertionFailed(f'{what}: expected {expected!r}, got {actual!r}')


def origin(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f'not a URL: {url}')
    return f'{parts.scheme}://{parts.netloc}'


# ---------------------------------------------------------------------------
# Step runner

class Runner:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.failed_steps: t.Set[str] = set()

    def step(self, name: str, needs: t.Sequence[str], fn: t.Callable[[], t.Any]) -> t.Any:
        missing = [n for n in needs if n in self.failed_steps]
        line: t.Dict[str, t.Any]
        result = None
        try:
            if missing:
                raise AssertionFailed(f'prerequisite failed: {", ".join(missing)}')
            result = fn()
            line = {'step': name, 'ok': True}
            if isinstance(result, dict):
                line['info'] = result
            self.passed += 1
        except Exception as err:  # noqa: BLE001 - every failure is reported, never raised
            line = {'step': name, 'ok': False, 'error': describe(err)}
            self.failed += 1
            self.failed_steps.add(name)
            if os.environ.get('SCENARIO_TRACEBACK'):
                traceback.print_exc()
        sys.stdout.write(json.dumps(line) + '\n')
        sys.stdout.flush()
        if not line['ok']:
            sys.stderr.write(f'scenario.py: {name}: {line["error"]}\n')
        return result


def xrpc_error(err: Exception) -> t.Optional[t.Tuple[int, t.Optional[str], t.Optional[str]]]:
    if isinstance(err, RequestErrorBase) and err.response is not None:
        content = err.response.content
        name = getattr(content, 'error', None)
        message = getattr(content, 'message', None)
        return err.response.status_code, name, message
    return None


def describe(err: Exception) -> str:
    x = xrpc_error(err)
    if x is not None:
        return f'XRPC {x[0]} {x[1]}: {x[2]}'
    return f'{type(err).__name__}: {err}'


def expect_error(fn: t.Callable[[], t.Any], status: int, names: t.Sequence[str], what: str,
                 exc_type: t.Type[Exception] = RequestErrorBase) -> t.Dict[str, t.Any]:
    try:
        res = fn()
    except exc_type as err:
        x = xrpc_error(err)
        check(x is not None, f'{what}: no HTTP response in {describe(err)}')
        got = {'status': x[0], 'error': x[1], 'message': x[2]}
        check(x[0] == status and x[1] in names, f'{what}: expected {status} {"|".join(names)}, got {got}')
        return got
    raise AssertionFailed(f'{what}: expected {status} {"|".join(names)}, but the call succeeded: {res!r:.300}')


# ---------------------------------------------------------------------------
# Data helpers

def make_png(width: int, height: int) -> bytes:
    """A valid 8-bit RGB PNG with random pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    raw = b''.join(b'\x00' + secrets.token_bytes(width * 3) for _ in range(height))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')


def raw_cid(data: bytes) -> str:
    """CIDv1, raw codec (0x55), sha2-256: the CID of a blob."""
    digest = hashlib.sha256(data).digest()
    cid_bytes = bytes([0x01, 0x55, 0x12, 0x20]) + digest
    return libipld.encode_cid(cid_bytes)


def rkey_of(uri: str) -> str:
    m = re.fullmatch(r'at://([^/]+)/([^/]+)/([^/]+)', uri)
    check(m is not None, f'not a record at-uri: {uri}')
    return m.group(3)


def field(obj: t.Any, key: str) -> t.Any:
    """Reads a field of an SDK model or of a plain dict (records come back as either)."""
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


# ---------------------------------------------------------------------------
# Scenario

def main() -> int:
    ap = argparse.ArgumentParser(description='atproto Python SDK scenario against a PDS')
    ap.add_argument('--pds', required=True)
    ap.add_argument('--plc', required=True)
    ap.add_argument('--handle-domain', default='.test')
    ap.add_argument('--invite', default=None)
    try:
        args = ap.parse_args()
        pds = origin(args.pds)
        plc = origin(args.plc)
    except SystemExit:
        return 2
    except ValueError as err:
        sys.stderr.write(f'scenario.py: {err}\n')
        return 2
    domain = args.handle_domain.lower()
    if not domain.startswith('.'):
        domain = '.' + domain

    r = Runner()
    rand = secrets.token_hex(5)
    handle = f'p{rand}{domain}'
    email = f'p{rand}@example.com'
    password = f'pw-{secrets.token_hex(9)}'
    state: t.Dict[str, t.Any] = {}
    expected: t.Dict[str, str] = {}  # rkey -> cid of the posts that must exist

    anon = Client(base_url=pds)
    client = Client(base_url=pds)

    def describe_server() -> t.Dict[str, t.Any]:
        d = anon.com.atproto.server.describe_server()
        check(domain in d.available_user_domains, f'available_user_domains {d.available_user_domains} lacks {domain}')
        check(d.did.startswith('did:web:'), f'did {d.did} is not did:web')
        return {'did': d.did}

    r.step('describeServer', [], describe_server)

    def create_account() -> t.Dict[str, t.Any]:
        data = models.ComAtprotoServerCreateAccount.Data(
            handle=handle, email=email, password=password, invite_code=args.invite
        )
        res = anon.com.atproto.server.create_account(data)
        check(re.fullmatch(r'did:plc:[a-z2-7]{24}', res.did) is not None, f'did is not did:plc: {res.did}')
        eq(res.handle, handle, 'createAccount handle')
        check(bool(res.access_jwt) and bool(res.refresh_jwt), 'missing tokens')
        state['did'] = res.did
        return {'did': res.did, 'handle': res.handle}

    r.step('createAccount (low-level client)', [], create_account)

    def did_document() -> t.Dict[str, t.Any]:
        did = state['did']
        resp = httpx.get(f'{plc}/{did}', timeout=30)
        check(resp.status_code == 200, f'GET {plc}/{did}: HTTP {resp.status_code}')
        doc = DidDocument.from_dict(resp.json())
        eq(doc.id, did, 'DID document id')
        eq((doc.get_pds_endpoint() or '').rstrip('/'), pds, '#atproto_pds endpoint')
        eq(doc.get_handle(), handle, 'DID document handle (alsoKnownAs)')
        did_key = doc.get_did_key()
        check(did_key is not None and did_key.startswith('did:key:z'), f'no #atproto key: {did_key}')
        state['did_key'] = did_key
        return {'didKey': did_key}

    r.step('PLC DID document', ['createAccount (low-level client)'], did_document)

    def login() -> None:
        client.login(handle, password, fetch_bsky_profile=False)
        s = client.com.atproto.server.get_session()
        eq(s.did, state['did'], 'getSession did')
        eq(s.handle, handle, 'getSession handle')
        eq(s.email, email, 'getSession email')

    r.step('login + getSession', ['createAccount (low-level client)'], login)

    def send_post() -> t.Dict[str, t.Any]:
        did = state['did']
        res = client.send_post('hello from the Python SDK', profile_identify=did)
        rkey = rkey_of(res.uri)
        check(TID_RE.match(rkey) is not None, f'rkey is not a TID: {rkey}')
        eq(res.uri, f'at://{did}/{POST}/{rkey}', 'send_post uri')
        got = client.com.atproto.repo.get_record({'repo': did, 'collection': POST, 'rkey': rkey})
        eq(got.cid, res.cid, 'getRecord cid')
        eq(field(got.value, 'text'), 'hello from the Python SDK', 'getRecord text')
        expected[rkey] = res.cid
        state['first_post'] = res.uri
        return {'rkey': rkey}

    r.step('send_post + getRecord', ['login + getSession'], send_post)

    def send_image() -> t.Dict[str, t.Any]:
        did = state['did']
        png = make_png(3, 2)
        # The SDK uploads with Content-Type */*: the PDS must sniff image/png.
        res = client.send_image(
            'a post with an image', image=png, image_alt='random pixels',
            image_aspect_ratio=models.AppBskyEmbedDefs.AspectRatio(width=3, height=2),
            profile_identify=did,
        )
        rkey = rkey_of(res.uri)
        expected[rkey] = res.cid
        got = client.com.atproto.repo.get_record({'repo': did, 'collection': POST, 'rkey': rkey})
        embed = field(got.value, 'embed')
        images = field(embed, 'images')
        check(images and len(images) == 1, f'embed images: {images!r}')
        blob = field(images[0], 'image')
        ref = field(blob, 'ref')
        link = field(ref, 'link') or (ref.get('$link') if isinstance(ref, dict) else None)
        eq(link, raw_cid(png), 'blob CID (raw codec, sha2-256)')
        eq(field(blob, 'mime_type') or field(blob, 'mimeType'), 'image/png', 'blob mimeType (sniffed)')
        eq(field(blob, 'size'), len(png), 'blob size')
        data = anon.com.atproto.sync.get_blob({'did': did, 'cid': link})
        eq(bytes(data), png, 'getBlob bytes')
        return {'rkey': rkey, 'blob': link}

    r.step('send_image + getBlob', ['login + getSession'], send_image)

    def paginate() -> t.Dict[str, t.Any]:
        did = state['did']
        for i in range(5):
            res = client.send_post(f'list me {i}', profile_identify=did)
            expected[rkey_of(res.uri)] = res.cid
        seen: t.List[str] = []
        cursor = None
        pages = 0
        while True:
            pages += 1
            check(pages <= 100, 'more than 100 pages: cursor does not advance')
            page = anon.com.atproto.repo.list_records(
                {'repo': did, 'collection': POST, 'limit': 2, 'cursor': cursor}
            )
            check(len(page.records) <= 2, f'page of {len(page.records)} records with limit 2')
            for rec in page.records:
                rkey = rkey_of(rec.uri)
                check(rkey in expected, f'unexpected record {rec.uri}')
                eq(rec.cid, expected[rkey], f'listRecords cid of {rkey}')
                seen.append(rkey)
            cursor = page.cursor
            if cursor is None or not page.records:
                break
        eq(seen, sorted(expected, reverse=True), 'listRecords: every post once, newest rkey first')
        return {'records': len(seen), 'pages': pages}

    r.step('listRecords pagination (limit 2)', ['send_post + getRecord'], paginate)

    def delete_post() -> None:
        did = state['did']
        uri = state['first_post']
        check(client.delete_post(uri), 'delete_post returned False')
        rkey = rkey_of(uri)
        del expected[rkey]
        expect_error(
            lambda: anon.com.atproto.repo.get_record({'repo': did, 'collection': POST, 'rkey': rkey}),
            400, ['RecordNotFound'], 'getRecord after delete_post', BadRequestError)

    r.step('delete_post', ['send_post + getRecord'], delete_post)

    def wrong_password() -> t.Dict[str, t.Any]:
        other = Client(base_url=pds)
        return expect_error(lambda: other.login(handle, password + '-wrong', fetch_bsky_profile=False),
                            401, ['AuthenticationRequired'], 'login with a wrong password', UnauthorizedError)

    r.step('error: wrong password', ['createAccount (low-level client)'], wrong_password)

    def missing_record() -> t.Dict[str, t.Any]:
        return expect_error(
            lambda: anon.com.atproto.repo.get_record(
                {'repo': state['did'], 'collection': POST, 'rkey': '2222222222222'}),
            400, ['RecordNotFound'], 'getRecord of a missing rkey', BadRequestError)

    r.step('error: getRecord of a missing rkey', ['createAccount (low-level client)'], missing_record)

    def invalid_record() -> t.Dict[str, t.Any]:
        data = models.ComAtprotoRepoCreateRecord.Data(
            repo=state['did'], collection=POST, record={'$type': POST, 'text': 'no createdAt'})
        return expect_error(lambda: client.com.atproto.repo.create_record(data),
                            400, ['InvalidRequest'], 'createRecord of a post without createdAt', BadRequestError)

    r.step('error: invalid record', ['login + getSession'], invalid_record)

    def export_repo() -> t.Dict[str, t.Any]:
        did = state['did']
        head = anon.com.atproto.sync.get_latest_commit({'did': did})
        car_bytes = anon.com.atproto.sync.get_repo({'did': did})
        car = CAR.from_bytes(car_bytes)
        eq(str(car.root), head.cid, 'CAR root vs getLatestCommit')
        commit = car.blocks.get(car.root)
        check(isinstance(commit, dict), 'the CAR lacks its root (commit) block')
        eq(commit.get('did'), did, 'commit did')
        eq(commit.get('version'), 3, 'commit version')
        eq(commit.get('rev'), head.rev, 'commit rev vs getLatestCommit')
        # The decoded commit must re-encode to exactly the root block (so the
        # signature check below is over the real bytes).
        reencoded = libipld.encode_dag_cbor(commit)
        cid_bytes = bytes([0x01, 0x71, 0x12, 0x20]) + hashlib.sha256(reencoded).digest()
        eq(libipld.encode_cid(cid_bytes), head.cid, 'CID of the re-encoded commit block')
        # Signature: over the DAG-CBOR of the commit without "sig".
        unsigned = {k: v for k, v in commit.items() if k != 'sig'}
        ok = verify_signature(state['did_key'], libipld.encode_dag_cbor(unsigned), commit['sig'])
        check(ok, 'commit signature does not verify against the DID document key')
        present = {str(c) for c in car.blocks}
        for rkey, cid in expected.items():
            check(cid in present, f'record block {cid} ({rkey}) missing from the CAR')
        return {'commit': head.cid, 'blocks': len(car.blocks)}

    r.step('sync.getRepo: CAR root is the latest commit', ['send_post + getRecord', 'PLC DID document'], export_repo)

    sys.stdout.write(f'{r.passed} passed, {r.failed} failed\n')
    sys.stdout.flush()
    return 0 if r.failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
