#!/usr/bin/env node
// Self-test of appview-standin.mjs and relay-standin.mjs, without atbox:
//   node tests/interop/standins-selftest.mjs   (after npm ci --prefix tests/interop)
//
// AppView: a plc-standin child holds an identity whose #atproto key signs
// service JWTs made here (by hand, and with the reference createServiceJwt);
// good / expired / too-long / wrong-aud / wrong-lxm / bad-signature / ...
// tokens are sent to the AppView stand-in.
// Relay: an in-process fake PDS (HTTP listRepos + a ws firehose emitting
// #commit / #sync / #account / #identity frames with cursor replay) is
// crawled by the relay stand-in; then each misbehaviour mode is exercised.
import './lib/quiet.mjs'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import * as dagCbor from '@ipld/dag-cbor'
import { P256Keypair, Secp256k1Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'
import { CID } from 'multiformats/cid'
import { base32 } from 'multiformats/bases/base32'
import { sha256 } from 'multiformats/hashes/sha2'
import { WebSocketServer } from 'ws'

const here = dirname(fileURLToPath(import.meta.url))

// ---------------------------------------------------------------------------
// child processes

async function startChild(script, args = []) {
  const proc = spawn(process.execPath, [join(here, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d) => (stderr += d))
  let stdout = ''
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  const firstLine = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout })
    rl.once('line', (line) => {
      rl.close()
      resolve(line)
    })
    proc.once('exit', () => reject(new Error(`${script} exited before printing its URL: ${stderr}`)))
  })
  proc.stdout.on('data', (d) => (stdout += d))
  const info = JSON.parse(firstLine)
  return { proc, info, url: info.url, exited, out: () => stdout, err: () => stderr }
}

async function stopChild(child) {
  child.proc.kill('SIGTERM')
  assert.deepEqual(await child.exited, { code: 0, signal: null })
  assert.equal(child.out(), '', 'nothing on stdout after the URL line')
  assert.equal(child.err(), '', 'no internal errors logged')
}

async function request(base, method, path, { body, headers = {} } = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, headers: res.headers, text, json }
}

async function waitFor(what, fn, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      last = await fn()
      if (last) return last
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last?.message ?? JSON.stringify(last)})`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

// ---------------------------------------------------------------------------
// AppView

const b64url = (bytes) => Buffer.from(bytes).toString('base64url')
const b64json = (obj) => b64url(Buffer.from(JSON.stringify(obj)))

/** A JWT signed by hand: any header / claims, signature by `key` over "<header>.<payload>". */
async function makeJwt(key, claims, header = { typ: 'JWT', alg: key.jwtAlg }) {
  const signing = `${b64json(header)}.${b64json(claims)}`
  const sig = await key.sign(Buffer.from(signing, 'utf8'))
  return `${signing}.${b64url(sig)}`
}

/** Registers a did:plc whose #atproto key is `signing` in the PLC stand-in. */
async function registerIdentity(plcUrl, signing) {
  const rotation = await Secp256k1Keypair.create()
  const unsigned = {
    type: 'plc_operation',
    rotationKeys: [rotation.did()],
    verificationMethods: { atproto: signing.did() },
    alsoKnownAs: ['at://alice.test'],
    services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: 'https://pds.example.test' } },
    prev: null,
  }
  const op = { ...unsigned, sig: b64url(await rotation.sign(dagCbor.encode(unsigned))) }
  const digest = await sha256.digest(dagCbor.encode(op))
  const did = `did:plc:${base32.baseEncode(digest.digest).slice(0, 24)}`
  const r = await request(plcUrl, 'POST', `/${did}`, { body: op })
  assert.equal(r.status, 200, r.text)
  return did
}

describe('appview-standin', () => {
  const APPVIEW_DID = 'did:web:appview.test'
  let plc
  let appview
  let k256
  let p256
  let did // #atproto = k256
  let didP256 // #atproto = p256
  const now = () => Math.floor(Date.now() / 1000)
  const claims = (over = {}) => ({
    iss: did,
    aud: APPVIEW_DID,
    lxm: 'app.bsky.actor.getProfile',
    iat: now(),
    exp: now() + 60,
    jti: 'aaaa',
    ...over,
  })
  const call = (path, token, opts = {}) =>
    request(appview.url, opts.method ?? 'GET', `/xrpc/${path}`, {
      ...opts,
      headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(opts.headers ?? {}) },
    })
  const lastLog = async () => (await request(appview.url, 'GET', '/_standin/log')).json.requests.at(-1)
  const expectBadJwt = async (token, pattern, path = 'app.bsky.actor.getProfile?actor=alice.test') => {
    const r = await call(path, token)
    assert.equal(r.status, 401, r.text)
    assert.equal(r.json.error, 'BadJwt', r.text)
    assert.match(r.json.message, pattern)
    const entry = await lastLog()
    assert.equal(entry.verdict, 'invalid')
    assert.equal(entry.status, 401)
    return { r, entry }
  }

  before(async () => {
    plc = await startChild('plc-standin.mjs')
    appview = await startChild('appview-standin.mjs', ['--plc', plc.url])
    assert.deepEqual(Object.keys(appview.info), ['url', 'did'])
    assert.equal(appview.info.did, APPVIEW_DID)
    k256 = await Secp256k1Keypair.create()
    p256 = await P256Keypair.create()
    did = await registerIdentity(plc.url, k256)
    didP256 = await registerIdentity(plc.url, p256)
  })
  after(() => {
    for (const c of [plc, appview]) if (c && c.proc.exitCode === null) c.proc.kill('SIGKILL')
  })

  test('a valid token: getProfile answered, request logged', async () => {
    const r = await call('app.bsky.actor.getProfile?actor=did:plc:bbbbbbbbbbbbbbbbbbbbbbbb', await makeJwt(k256, claims()), {
      headers: {
        'atproto-proxy': `${APPVIEW_DID}#bsky_appview`,
        'accept-language': 'fr, en;q=0.5',
        'atproto-accept-labelers': 'did:plc:labeler;redact',
      },
    })
    assert.equal(r.status, 200, r.text)
    assert.deepEqual(r.json, { did: 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb', handle: 'stub.test' })
    assert.equal(r.headers.get('atproto-content-labelers'), 'did:plc:labeler;redact')
    const e = await lastLog()
    assert.equal(e.method, 'GET')
    assert.equal(e.nsid, 'app.bsky.actor.getProfile')
    assert.deepEqual(e.query, { actor: 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb' })
    assert.equal(e.headers['atproto-proxy'], `${APPVIEW_DID}#bsky_appview`)
    assert.equal(e.headers['accept-language'], 'fr, en;q=0.5')
    assert.equal(e.headers['atproto-accept-labelers'], 'did:plc:labeler;redact')
    assert.equal(e.headers.authorization, 'Bearer <jwt>')
    assert.equal(e.verdict, 'valid')
    assert.equal(e.status, 200)
    assert.equal(e.jwt.claims.iss, did)
    assert.equal(e.jwt.header.alg, 'ES256K')
    assert.equal(e.jwt.audForm, 'bare')
    assert.equal(e.jwt.signingKey, k256.did())
    assert.equal(e.jwt.lowS, true)
    assert.ok(Object.values(e.jwt.checks).every((v) => v === 'ok'), JSON.stringify(e.jwt.checks))

    // actor given as a handle -> the caller's DID
    const r2 = await call('app.bsky.actor.getProfile?actor=alice.test', await makeJwt(k256, claims()))
    assert.deepEqual(r2.json, { did, handle: 'stub.test' })
  })

  test('aud with #bsky_appview is accepted and logged as such; P-256 (ES256) keys work', async () => {
    const r = await call('app.bsky.actor.getProfile', await makeJwt(k256, claims({ aud: `${APPVIEW_DID}#bsky_appview` })))
    assert.equal(r.status, 200, r.text)
    assert.deepEqual(r.json, { did, handle: 'stub.test' })
    assert.equal((await lastLog()).jwt.audForm, '#bsky_appview')

    const r2 = await call('app.bsky.feed.getTimeline?limit=5', await makeJwt(p256, claims({ iss: didP256, lxm: 'app.bsky.feed.getTimeline' })))
    assert.equal(r2.status, 200, r2.text)
    assert.deepEqual(r2.json, { feed: [] })
    const e = await lastLog()
    assert.equal(e.jwt.header.alg, 'ES256')
    assert.equal(e.jwt.signingKey, p256.did())
    assert.deepEqual(e.query, { limit: '5' })
  })

  test('a token made by the reference createServiceJwt is accepted', async () => {
    const jwt = await createServiceJwt({ iss: did, aud: APPVIEW_DID, lxm: 'app.bsky.feed.getTimeline', keypair: k256 })
    const r = await call('app.bsky.feed.getTimeline', jwt)
    assert.equal(r.status, 200, r.text)
  })

  test('POST with JSON body and other methods are echoed', async () => {
    const report = { reasonType: 'com.atproto.moderation.defs#reasonSpam', subject: { $type: 'com.atproto.admin.defs#repoRef', did } }
    const r = await call('com.atproto.moderation.createReport', await makeJwt(k256, claims({ lxm: 'com.atproto.moderation.createReport' })), {
      method: 'POST',
      body: report,
    })
    assert.equal(r.status, 200, r.text)
    assert.deepEqual(r.json, { ok: true, nsid: 'com.atproto.moderation.createReport', iss: did, aud: APPVIEW_DID, query: {}, body: report })
    const e = await lastLog()
    assert.equal(e.method, 'POST')
    assert.deepEqual(e.body, report)
    assert.match(e.headers['content-type'], /^application\/json/)

    const q = 'chat.bsky.convo.listConvos?limit=2&status=a&status=b'
    const r2 = await call(q, await makeJwt(k256, claims({ iss: `${did}#atproto`, lxm: 'chat.bsky.convo.listConvos' })))
    assert.equal(r2.status, 200, r2.text)
    assert.deepEqual(r2.json, { ok: true, nsid: 'chat.bsky.convo.listConvos', iss: `${did}#atproto`, aud: APPVIEW_DID, query: { limit: '2', status: ['a', 'b'] } })
  })

  test('no / non-Bearer authorization: 401 AuthMissing', async () => {
    for (const headers of [{}, { authorization: 'Basic YWRtaW46eA==' }]) {
      const r = await request(appview.url, 'GET', '/xrpc/app.bsky.actor.getProfile?actor=alice.test', { headers })
      assert.equal(r.status, 401)
      assert.equal(r.json.error, 'AuthMissing')
      const e = await lastLog()
      assert.equal(e.verdict, 'missing')
      assert.equal(e.jwt, undefined)
    }
  })

  test('expired, too long-lived, and iat-less tokens are refused', async () => {
    const { entry } = await expectBadJwt(await makeJwt(k256, claims({ iat: now() - 120, exp: now() - 60 })), /jwt expired/)
    assert.equal(entry.error.reason, 'JwtExpired')
    assert.equal(entry.jwt.checks.signature, 'ok', 'a properly signed but expired token')
    await expectBadJwt(await makeJwt(k256, claims({ exp: now() + 2 * 3600 })), /s away \(max 3600 s\)/)
    const { iat, ...noIat } = claims()
    await expectBadJwt(await makeJwt(k256, noIat), /iat undefined missing/)
    await expectBadJwt(await makeJwt(k256, claims({ iat: now() + 600 })), /iat .* is in the future/)
    const { exp, ...noExp } = claims()
    await expectBadJwt(await makeJwt(k256, noExp), /exp undefined is not a number/)
    // 59 minutes is fine
    const ok = await call('app.bsky.actor.getProfile', await makeJwt(k256, claims({ exp: now() + 59 * 60 })))
    assert.equal(ok.status, 200, ok.text)
  })

  test('wrong audience is refused', async () => {
    for (const aud of ['did:web:other.test', `${APPVIEW_DID}#bsky_chat`, 'did:web:appview.test.evil', `${APPVIEW_DID}#`]) {
      const { r, entry } = await expectBadJwt(await makeJwt(k256, claims({ aud })), /aud .* is not one of|jwt audience/)
      assert.equal(entry.error.reason, 'BadJwtAudience', r.text)
    }
  })

  test('wrong or missing lxm is refused', async () => {
    const { entry } = await expectBadJwt(await makeJwt(k256, claims({ lxm: 'app.bsky.feed.getTimeline' })), /bad jwt lexicon method \("lxm"\). must match: app.bsky.actor.getProfile/)
    assert.equal(entry.error.reason, 'BadJwtLexiconMethod')
    const { lxm, ...noLxm } = claims()
    await expectBadJwt(await makeJwt(k256, noLxm), /missing jwt lexicon method/)
    await expectBadJwt(await makeJwt(k256, claims({ lxm: '*' })), /lexicon method/)
  })

  test('bad signatures are refused', async () => {
    const stranger = await Secp256k1Keypair.create()
    const { entry } = await expectBadJwt(await makeJwt(stranger, claims()), /jwt signature does not match jwt issuer/)
    assert.equal(entry.error.reason, 'BadJwtSignature')
    assert.match(entry.jwt.checks.signature, /does not verify against #atproto/)

    const good = await makeJwt(k256, claims())
    const [h, p, s] = good.split('.')
    const sig = Buffer.from(s, 'base64url')
    sig[5] ^= 1
    await expectBadJwt(`${h}.${p}.${b64url(sig)}`, /signature/)
    // claims altered after signing
    await expectBadJwt(`${h}.${b64json({ ...JSON.parse(Buffer.from(p, 'base64url')), exp: now() + 300 })}.${s}`, /signature/)
    // k256 signature, header claims ES256 (the key's alg must match)
    await expectBadJwt(await makeJwt(k256, claims(), { typ: 'JWT', alg: 'ES256' }), /could not verify jwt signature/)
    // a P-256 key does not sign for the k256 DID
    await expectBadJwt(await makeJwt(p256, claims()), /signature/)
  })

  test('malformed tokens, bad alg / typ / iss', async () => {
    await expectBadJwt('garbage', /poorly formatted jwt/)
    await expectBadJwt('a.b.c', /poorly formatted jwt header/)
    const c = b64json(claims())
    await expectBadJwt(`${b64json({ alg: 'none', typ: 'JWT' })}.${c}.`, /alg "none" is not ES256K or ES256/)
    await expectBadJwt(`${b64json({ alg: 'HS256', typ: 'JWT' })}.${c}.AAAA`, /alg "HS256"/)
    await expectBadJwt(await makeJwt(k256, claims(), { typ: 'at+jwt', alg: 'ES256K' }), /Invalid jwt type "at\+jwt"/)
    await expectBadJwt(await makeJwt(k256, claims({ iss: 'alice.test' })), /iss "alice.test" is not a DID/)
    await expectBadJwt(await makeJwt(k256, claims({ iss: 'did:plc:zzzzzzzzzzzzzzzzzzzzzzzz' })), /identity unknown/)
    await expectBadJwt(await makeJwt(k256, claims({ iss: 'did:web:alice.test' })), /only resolves did:plc/)
    // a labeler issuer needs an #atproto_label key, which this identity lacks
    await expectBadJwt(await makeJwt(k256, claims({ iss: `${did}#atproto_labeler` })), /no #atproto_label Multikey/)
  })

  test('override, did.json, reset, unknown paths', async () => {
    let r = await request(appview.url, 'POST', '/_standin/override', {
      body: { nsid: 'app.bsky.feed.getTimeline', status: 500, body: { error: 'InternalServerError', message: 'boom' }, times: 1 },
    })
    assert.equal(r.status, 200)
    const tok = () => makeJwt(k256, claims({ lxm: 'app.bsky.feed.getTimeline' }))
    // auth is still checked first
    r = await call('app.bsky.feed.getTimeline', await makeJwt(k256, claims()))
    assert.equal(r.status, 401)
    r = await call('app.bsky.feed.getTimeline', await tok())
    assert.equal(r.status, 500)
    assert.deepEqual(r.json, { error: 'InternalServerError', message: 'boom' })
    assert.equal((await lastLog()).override, true)
    r = await call('app.bsky.feed.getTimeline', await tok())
    assert.equal(r.status, 200, 'times: 1 used up')

    r = await request(appview.url, 'GET', '/.well-known/did.json')
    assert.equal(r.json.id, APPVIEW_DID)
    assert.deepEqual(r.json.service[0], { id: '#bsky_appview', type: 'BskyAppView', serviceEndpoint: appview.url })

    assert.equal((await request(appview.url, 'GET', '/nope')).status, 404)
    r = await request(appview.url, 'POST', '/_standin/reset')
    assert.equal(r.status, 200)
    assert.deepEqual((await request(appview.url, 'GET', '/_standin/log')).json, { did: APPVIEW_DID, requests: [] })
  })

  test('--did and --alt-aud; clean shutdown', async () => {
    const other = await startChild('appview-standin.mjs', ['--plc', plc.url, '--did', 'did:web:api.example.test', '--alt-aud', 'did:web:api.example.test#bsky_chat'])
    assert.equal(other.info.did, 'did:web:api.example.test')
    const base = { aud: 'did:web:api.example.test#bsky_chat', lxm: 'chat.bsky.convo.listConvos' }
    let r = await request(other.url, 'GET', '/xrpc/chat.bsky.convo.listConvos', { headers: { authorization: `Bearer ${await makeJwt(k256, claims(base))}` } })
    assert.equal(r.status, 200, r.text)
    r = await request(other.url, 'GET', '/xrpc/chat.bsky.convo.listConvos', { headers: { authorization: `Bearer ${await makeJwt(k256, claims({ ...base, aud: APPVIEW_DID }))}` } })
    assert.equal(r.status, 401)
    await stopChild(other)
    await stopChild(appview)
    await stopChild(plc)
  })
})

// ---------------------------------------------------------------------------
// Relay

const S32 = '234567abcdefghijklmnopqrstuvwxyz'
let lastTidUs = 0n
function nextTid() {
  let us = BigInt(Date.now()) * 1000n
  if (us <= lastTidUs) us = lastTidUs + 1n
  lastTidUs = us
  let v = (us << 10n) | 7n
  let s = ''
  for (let i = 0; i < 13; i++) {
    s = S32[Number(v & 31n)] + s
    v >>= 5n
  }
  return s
}

function varint(n) {
  const out = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return Buffer.from(out)
}

async function block(value) {
  const bytes = dagCbor.encode(value)
  return { cid: CID.create(1, 0x71, await sha256.digest(bytes)), bytes }
}

function car(roots, blocks) {
  const header = dagCbor.encode({ version: 1, roots })
  const parts = [varint(header.length), Buffer.from(header)]
  for (const b of blocks) parts.push(varint(b.cid.bytes.length + b.bytes.length), Buffer.from(b.cid.bytes), Buffer.from(b.bytes))
  return new Uint8Array(Buffer.concat(parts))
}

/** A fake PDS: listRepos over HTTP, subscribeRepos over ws with cursor replay. */
async function startFakePds() {
  const events = [] // { seq, bytes }
  const repos = new Map() // did -> { did, head, rev, active, status }
  const connections = [] // { cursor, ws, open }
  let seq = 0
  let listReposCalls = 0
  const http = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1')
    if (url.pathname === '/xrpc/com.atproto.sync.listRepos') {
      listReposCalls++
      const list = [...repos.values()].filter((r) => r.head).map((r) => {
        const o = { did: r.did, head: r.head, rev: r.rev, active: r.active }
        if (!r.active && r.status) o.status = r.status
        return o
      })
      const body = JSON.stringify({ repos: list })
      res.writeHead(200, { 'content-type': 'application/json' })
      return res.end(body)
    }
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end('{"error":"NotFound"}')
  })
  const wss = new WebSocketServer({ noServer: true })
  http.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url, 'http://127.0.0.1')
    if (url.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') return socket.destroy()
    wss.handleUpgrade(req, socket, head, (ws) => {
      const c = url.searchParams.get('cursor')
      const conn = { cursor: c === null ? null : Number(c), ws, open: true }
      connections.push(conn)
      ws.on('close', () => (conn.open = false))
      ws.on('error', () => {})
      if (conn.cursor !== null) for (const e of events) if (e.seq > conn.cursor) ws.send(e.bytes)
    })
  })
  await new Promise((r) => http.listen(0, '127.0.0.1', r))
  const port = http.address().port

  const emit = (t, body) => {
    seq++
    const bytes = Buffer.concat([dagCbor.encode({ op: 1, t }), dagCbor.encode({ ...body, seq })])
    events.push({ seq, bytes })
    for (const c of connections) if (c.open) c.ws.send(bytes)
    return seq
  }
  const repo = (did) => {
    if (!repos.has(did)) repos.set(did, { did, head: null, rev: null, active: true, status: null })
    return repos.get(did)
  }
  const time = () => new Date().toISOString()
  const commitBlock = async (did, rev) => block({ did, version: 3, data: (await block({ e: [], l: null })).cid, rev, prev: null, sig: new Uint8Array(64) })

  return {
    port,
    hostname: `127.0.0.1:${port}`,
    connections,
    repos,
    listReposCalls: () => listReposCalls,
    open: () => connections.filter((c) => c.open),
    /** #commit; `carRootOverride` makes the blocks CAR name another root */
    async commit(did, { carRootOverride } = {}) {
      const r = repo(did)
      const rev = nextTid()
      const cb = await commitBlock(did, rev)
      const since = r.rev
      r.head = cb.cid.toString()
      r.rev = rev
      const s = emit('#commit', {
        rebase: false, tooBig: false, repo: did, commit: cb.cid, rev, since,
        blocks: car([carRootOverride ?? cb.cid], [cb]), ops: [], blobs: [], time: time(),
      })
      return { seq: s, rev, cid: cb.cid.toString() }
    },
    async sync(did) {
      const r = repo(did)
      const rev = nextTid()
      const cb = await commitBlock(did, rev)
      r.head = cb.cid.toString()
      r.rev = rev
      const s = emit('#sync', { did, blocks: car([cb.cid], [cb]), rev, time: time() })
      return { seq: s, rev, cid: cb.cid.toString() }
    },
    account(did, active, status) {
      const r = repo(did)
      r.active = active
      r.status = status ?? null
      return emit('#account', { did, time: time(), active, ...(status ? { status } : {}) })
    },
    identity(did, handle) {
      return emit('#identity', { did, time: time(), handle })
    },
    close: () => new Promise((r) => {
      for (const c of connections) c.ws.terminate()
      http.close(r)
      http.closeAllConnections()
    }),
  }
}

describe('relay-standin', () => {
  let relay
  let pds
  const A = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
  const B = 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'
  const C = 'did:plc:cccccccccccccccccccccccc'
  const get = (path) => request(relay.url, 'GET', path)
  const status = (did) => get(`/xrpc/com.atproto.sync.getRepoStatus?did=${did}`)
  const latest = (did) => get(`/xrpc/com.atproto.sync.getLatestCommit?did=${did}`)
  const crawl = (hostname) => request(relay.url, 'POST', '/xrpc/com.atproto.sync.requestCrawl', { body: { hostname } })
  const setMode = async (mode, extra = {}) => {
    const r = await request(relay.url, 'POST', '/_standin/mode', { body: { mode, ...extra } })
    assert.equal(r.status, 200, r.text)
    assert.deepEqual(r.json, { mode })
  }
  const log = async () => (await get('/_standin/log')).json
  const waitLatest = (did, want) =>
    waitFor(`getLatestCommit ${did} = ${want.rev}`, async () => {
      const r = await latest(did)
      return r.status === 200 && r.json.rev === want.rev && r.json.cid === want.cid ? r : null
    })
  const waitEvent = (pred, what) => waitFor(what, async () => (await log()).events.find(pred))

  before(async () => {
    pds = await startFakePds()
    relay = await startChild('relay-standin.mjs')
    assert.deepEqual(Object.keys(relay.info), ['url'])
  })
  after(async () => {
    if (relay && relay.proc.exitCode === null) relay.proc.kill('SIGKILL')
    await pds?.close()
  })

  let a1
  let b2
  test('unknown repos before any crawl: 400 RepoNotFound', async () => {
    a1 = await pds.commit(A) // before the relay knows the host: only listRepos shows it
    for (const r of [await status(A), await latest(A)]) {
      assert.equal(r.status, 400)
      assert.equal(r.json.error, 'RepoNotFound')
    }
    let r = await get('/xrpc/com.atproto.sync.getRepoStatus')
    assert.equal(r.status, 400)
    assert.equal(r.json.error, 'InvalidRequest')
    r = await get('/xrpc/com.atproto.sync.getRepoStatus?did=nope')
    assert.equal(r.json.error, 'InvalidRequest')
    r = await get('/xrpc/com.atproto.sync.listRepos')
    assert.equal(r.status, 501)
  })

  test('requestCrawl: validation', async () => {
    for (const hostname of [`http://${pds.hostname}`, `${pds.hostname}/`, '', 42, 'a b']) {
      const r = await crawl(hostname)
      assert.equal(r.status, 400, `${JSON.stringify(hostname)}: ${r.text}`)
      assert.equal(r.json.error, 'InvalidRequest')
    }
    const r = await request(relay.url, 'POST', '/xrpc/com.atproto.sync.requestCrawl', { body: {} })
    assert.equal(r.status, 400)
    const l = await log()
    assert.equal(l.crawls.length, 6)
    assert.ok(l.crawls.every((c) => c.status === 400))
    assert.equal(l.hosts.length, 0)
  })

  test('requestCrawl: subscribes (localhost:port), backfills listRepos, tracks #commit / #sync', async () => {
    const hostname = `localhost:${pds.port}`
    const r = await crawl(hostname)
    assert.equal(r.status, 200, r.text)
    assert.deepEqual(r.json, {})
    await waitFor('a firehose connection', () => pds.open().length === 1)
    assert.equal(pds.connections[0].cursor, null, 'first subscription is live-only')
    await waitLatest(A, a1) // from listRepos
    assert.equal(pds.listReposCalls(), 1)

    pds.identity(B, 'bob.test')
    pds.account(B, true)
    await pds.commit(B)
    b2 = await pds.commit(B)
    await waitLatest(B, b2)
    assert.deepEqual((await status(B)).json, { did: B, active: true, rev: b2.rev })
    assert.deepEqual((await status(A)).json, { did: A, active: true, rev: a1.rev })

    const a2 = await pds.sync(A)
    await waitLatest(A, a2)

    // a second crawl while subscribed is acknowledged but changes nothing
    assert.equal((await crawl(hostname)).status, 200)
    const l = await log()
    assert.equal(pds.connections.length, 1)
    const crawls = l.crawls.filter((c) => c.status === 200)
    assert.deepEqual(crawls.map((c) => c.hostname), [hostname, hostname])
    assert.deepEqual(crawls.map((c) => c.action), ['subscribed (live, no cursor)', 'already subscribed'])
    for (const c of crawls) assert.ok(Date.parse(c.time) > Date.now() - 60000)
    assert.equal(l.hosts[0].hostname, hostname)
    assert.equal(l.hosts[0].state, 'open')
    assert.equal(l.hosts[0].backfill.ok, true)
    const fire = l.events.filter((e) => e.type !== 'listRepos')
    assert.deepEqual(fire.map((e) => [e.type, e.did, e.applied]), [
      ['#identity', B, true], ['#account', B, true], ['#commit', B, true], ['#commit', B, true], ['#sync', A, true],
    ])
    assert.ok(fire.every((e) => !e.problems), JSON.stringify(fire))
    assert.equal(fire[2].since, null)
    assert.equal(fire[3].since, fire[2].rev)
    assert.equal(l.repos[B].handle, 'bob.test')
  })

  test('#account: inactive status reported; getLatestCommit errors per lexicon', async () => {
    pds.account(B, false, 'deactivated')
    await waitFor('deactivated', async () => (await status(B)).json.active === false)
    assert.deepEqual((await status(B)).json, { did: B, active: false, status: 'deactivated' })
    let r = await latest(B)
    assert.equal(r.status, 400)
    assert.equal(r.json.error, 'RepoDeactivated')
    pds.account(B, false, 'takendown')
    await waitFor('takendown', async () => (await status(B)).json.status === 'takendown')
    assert.equal((await latest(B)).json.error, 'RepoTakendown')
    pds.account(B, true)
    await waitFor('active again', async () => (await status(B)).json.active === true)
    r = await latest(B)
    assert.deepEqual(r.json, { cid: b2.cid, rev: b2.rev })
  })

  test('problems in frames are logged', async () => {
    const bogus = await block({ not: 'the commit' })
    const c1 = await pds.commit(C, { carRootOverride: bogus.cid })
    const e = await waitEvent((x) => x.seq === c1.seq, 'the bogus commit')
    assert.ok(e.problems.some((p) => /blocks CAR root .* is not the commit/.test(p)), JSON.stringify(e))
  })

  test('mode lagging: old rev reported, catches up from its cursor when normal again', async () => {
    await setMode('lagging')
    const b3 = await pds.commit(B)
    await waitEvent((e) => e.seq === b3.seq, 'b3 received')
    const seen = (await log()).events.filter((e) => e.seq === b3.seq)
    assert.deepEqual(seen.map((e) => e.applied), [false])
    assert.deepEqual((await latest(B)).json, { cid: b2.cid, rev: b2.rev })
    assert.equal((await status(B)).json.rev, b2.rev)
    // a crawl request does not end lagging
    assert.equal((await crawl(`localhost:${pds.port}`)).status, 200)
    assert.equal((await latest(B)).json.rev, b2.rev)

    const before = pds.connections.length
    await setMode('normal')
    await waitLatest(B, b3)
    assert.equal(pds.connections.length, before + 1)
    assert.equal(pds.connections.at(-1).cursor, b3.seq - 1, 'resubscribed from the last applied seq')
    const after = (await log()).events.filter((e) => e.seq === b3.seq)
    assert.deepEqual(after.map((e) => e.applied), [false, true])
    b2 = b3
  })

  test('mode down: 503 on every XRPC endpoint (or closed connections)', async () => {
    await setMode('down')
    for (const r of [await status(B), await latest(B), await crawl(`localhost:${pds.port}`)]) {
      assert.equal(r.status, 503)
      assert.equal(r.json.error, 'ServiceUnavailable')
    }
    const l = await log()
    assert.deepEqual(l.crawls.at(-1).status, 503)
    assert.deepEqual(l.crawls.at(-1).mode, 'down')
    const b4 = await pds.commit(B)
    await waitEvent((e) => e.seq === b4.seq, 'b4 received')
    await setMode('down', { close: true })
    await assert.rejects(fetch(`${relay.url}/xrpc/com.atproto.sync.getRepoStatus?did=${B}`))
    assert.equal((await get('/_standin/mode')).json.mode, 'down', 'test controls still answer')
    await setMode('normal')
    await waitLatest(B, b4)
    b2 = b4
  })

  test('mode forget: RepoNotFound until the next crawl, which resubscribes and backfills', async () => {
    const listed = pds.listReposCalls()
    await setMode('forget')
    await waitFor('subscription closed', () => pds.open().length === 0)
    for (const did of [A, B]) {
      for (const r of [await status(did), await latest(did)]) {
        assert.equal(r.status, 400)
        assert.equal(r.json.error, 'RepoNotFound')
      }
    }
    const b5 = await pds.commit(B) // nobody listens
    assert.equal((await latest(B)).json.error, 'RepoNotFound')
    const l = await log()
    assert.equal(l.mode, 'forget')
    assert.equal(l.hosts.length, 0)
    assert.deepEqual(l.repos, {})

    const r = await crawl(pds.hostname)
    assert.equal(r.status, 200)
    assert.equal((await get('/_standin/mode')).json.mode, 'normal')
    await waitFor('a new connection', () => pds.open().length === 1)
    assert.equal(pds.connections.at(-1).cursor, null)
    await waitLatest(B, b5) // from listRepos
    assert.equal(pds.listReposCalls(), listed + 1)
    const b6 = await pds.commit(B)
    await waitLatest(B, b6)
    const l2 = await log()
    assert.deepEqual(l2.modeChanges.map((m) => m.to), ['lagging', 'normal', 'down', 'down', 'normal', 'forget', 'normal'])
    assert.equal(l2.crawls.at(-1).mode, 'forget')
    assert.equal(l2.crawls.at(-1).hostname, pds.hostname)
  })

  test('a dropped subscription is not resumed until requestCrawl (without --reconnect)', async () => {
    for (const c of pds.open()) c.ws.terminate()
    await waitFor('relay sees the close', async () => (await log()).hosts.find((h) => h.hostname === pds.hostname)?.state === 'closed')
    const missed = await pds.commit(B)
    await new Promise((r) => setTimeout(r, 200))
    assert.notEqual((await latest(B)).json.rev, missed.rev)
    assert.equal((await crawl(pds.hostname)).status, 200)
    await waitLatest(B, missed) // resubscribed with its cursor: the missed event is replayed
    assert.equal(pds.connections.at(-1).cursor, missed.seq - 1)
  })

  test('reset, unknown paths, clean shutdown', async () => {
    assert.equal((await request(relay.url, 'POST', '/_standin/mode', { body: { mode: 'sideways' } })).status, 400)
    assert.equal((await get('/nope')).status, 404)
    assert.equal((await request(relay.url, 'POST', '/_standin/reset')).status, 200)
    const l = await log()
    assert.deepEqual([l.crawls, l.events, l.modeChanges], [[], [], []])
    assert.ok(l.repos[B], 'reset clears the logs, not the state')
    await stopChild(relay)
  })
})
