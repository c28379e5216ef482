#!/usr/bin/env node
// Self-test of plc-standin.mjs (the did:plc directory stand-in): starts it as
// a child process and drives it over HTTP like atbox's tests would.
//   node tests/interop/plc-standin-selftest.mjs   (after npm ci --prefix tests/interop)
//
// Hashes, base32 and CIDs are recomputed here independently of the server
// (node:crypto + a local RFC 4648 encoder), and a real plc.directory log is
// replayed as a known-answer test.
import './lib/quiet.mjs'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import * as dagCbor from '@ipld/dag-cbor'
import { P256Keypair, Secp256k1Keypair, verifySignature } from '@atproto/crypto'

const here = dirname(fileURLToPath(import.meta.url))
const SCRIPT = join(here, 'plc-standin.mjs')

// ---------------------------------------------------------------------------
// independent encoders

const sha256 = (bytes) => new Uint8Array(createHash('sha256').update(bytes).digest())

function base32(bytes) {
  // RFC 4648 base32, lowercase, no padding
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let out = ''
  let bits = 0
  let value = 0
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}

/** CIDv1 (0x01) + dag-cbor (0x71) + sha2-256 (0x12, 32 bytes), multibase "b" */
const cidOf = (op) => 'b' + base32(new Uint8Array([0x01, 0x71, 0x12, 0x20, ...sha256(dagCbor.encode(op))]))
const didOf = (signedGenesis) => 'did:plc:' + base32(sha256(dagCbor.encode(signedGenesis))).slice(0, 24)
const b64url = (bytes) => Buffer.from(bytes).toString('base64url') // unpadded

async function sign(unsigned, key) {
  assert.equal(unsigned.sig, undefined)
  const sig = await key.sign(dagCbor.encode(unsigned))
  assert.equal(sig.length, 64)
  return { ...unsigned, sig: b64url(sig) }
}

const N = {
  ES256K: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n, // secp256k1
  ES256: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n, // P-256
}
/** The same signature with s replaced by n - s (valid ECDSA, but high-S). */
function toHighS(sigB64, jwtAlg) {
  const bytes = Buffer.from(sigB64, 'base64url')
  const s = BigInt('0x' + bytes.subarray(32).toString('hex'))
  const high = N[jwtAlg] - s
  assert.ok(high > N[jwtAlg] / 2n, 'reference signatures are low-S')
  const out = Buffer.concat([bytes.subarray(0, 32), Buffer.from(high.toString(16).padStart(64, '0'), 'hex')])
  return out
}

// ---------------------------------------------------------------------------
// server process

async function startServer(args = []) {
  const proc = spawn(process.execPath, [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (d) => (stderr += d))
  let stdout = ''
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  const firstLine = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout })
    rl.once('line', (line) => resolve(line))
    proc.once('exit', () => reject(new Error(`plc-standin exited before printing its URL: ${stderr}`)))
  })
  proc.stdout.on('data', (d) => (stdout += d))
  return { proc, firstLine, exited, url: JSON.parse(firstLine).url, out: () => stdout, err: () => stderr }
}

let server
let URL_
before(async () => {
  server = await startServer()
  URL_ = server.url
})
after(() => {
  if (server.proc.exitCode === null) server.proc.kill('SIGKILL')
})

async function request(method, path, { body, raw, contentType = 'application/json' } = {}) {
  const res = await fetch(URL_ + path, {
    method,
    headers: body !== undefined || raw !== undefined ? { 'content-type': contentType } : {},
    body: raw !== undefined ? raw : body !== undefined ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.status, type: res.headers.get('content-type'), text, json }
}
const get = (path) => request('GET', path)
const post = (did, body, opts) => request('POST', `/${did}`, { body, ...opts })

async function expectAccepted(did, op) {
  const r = await post(did, op)
  assert.equal(r.status, 200, `expected acceptance, got ${r.status}: ${r.text}`)
  assert.equal(r.text, 'OK')
}
async function expectRejected(did, op, pattern, status = 400, opts) {
  const r = await post(did, op, opts)
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`)
  assert.ok(r.json && typeof r.json.message === 'string', `error body must be {"message": ...}: ${r.text}`)
  assert.match(r.json.message, pattern)
  return r.json.message
}

// ---------------------------------------------------------------------------
// fixtures

const atprotoOp = (over = {}) => ({
  type: 'plc_operation',
  rotationKeys: [],
  verificationMethods: {},
  alsoKnownAs: ['at://alice.test'],
  services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: 'https://pds.example.test' } },
  prev: null,
  ...over,
})

async function newIdentity({ handle = 'alice.test', rotKeys, signWith } = {}) {
  const signing = await Secp256k1Keypair.create()
  const rot1 = await Secp256k1Keypair.create()
  const rot2 = await P256Keypair.create()
  const keys = rotKeys ?? [rot1, rot2]
  const genesis = await sign(
    atprotoOp({
      rotationKeys: keys.map((k) => k.did()),
      verificationMethods: { atproto: signing.did() },
      alsoKnownAs: [`at://${handle}`],
    }),
    signWith ?? keys[0],
  )
  return { signing, rot1, rot2, genesis, did: didOf(genesis) }
}

function update(prevOp, changes) {
  const { sig, ...rest } = prevOp
  return { ...rest, ...changes, prev: cidOf(prevOp) }
}

// ---------------------------------------------------------------------------
// tests

test('start-up: exactly one JSON line with the URL; health', async () => {
  assert.match(server.firstLine, /^\{"url":"http:\/\/127\.0\.0\.1:\d+"\}$/)
  const h = await get('/_health')
  assert.equal(h.status, 200)
  assert.deepEqual(h.json, { version: 'standin' })
})

test('known answer: replays the public plc.directory log of bsky.app', async () => {
  // https://plc.directory/did:plc:z72i7hdynmk6r22z27h6tvur/log/audit (first two ops)
  const did = 'did:plc:z72i7hdynmk6r22z27h6tvur'
  const keys = {
    rotationKeys: [
      'did:key:zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg',
      'did:key:zQ3shpKnbdPx3g3CmPf5cRVTPe1HtSwVn5ish3wSnDPQCbLJK',
    ],
    verificationMethods: { atproto: 'did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF' },
  }
  const services = { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: 'https://bsky.social' } }
  const op0 = {
    sig: '9NuYV7AqwHVTc0YuWzNV3CJafsSZWH7qCxHRUIP2xWlB-YexXC1OaYAnUayiCXLVzRQ8WBXIqF-SvZdNalwcjA',
    prev: null, type: 'plc_operation', services, alsoKnownAs: ['at://bluesky-team.bsky.social'], ...keys,
  }
  const op1 = {
    sig: '1mEWzRtFOgeRXH-YCSPTxb990JOXxa__n8Qw6BOKl7Ndm6OFFmwYKiiMqMCpAbxpnGjF5abfIsKc7u3a77Cbnw',
    prev: 'bafyreigp6shzy6dlcxuowwoxz7u5nemdrkad2my5zwzpwilcnhih7bw6zm',
    type: 'plc_operation', services, alsoKnownAs: ['at://bsky.app'], ...keys,
  }
  assert.equal(didOf(op0), did)
  assert.equal(cidOf(op0), op1.prev)
  assert.equal(cidOf(op1), 'bafyreihmuvr3frdvd6vmdhucih277prdcfcezf67lasg5oekxoimnunjoq')

  await expectAccepted(did, op0)
  await expectAccepted(did, op1)
  const doc = await get(`/${did}`)
  assert.equal(doc.status, 200)
  assert.match(doc.type, /^application\/did\+ld\+json/)
  assert.deepEqual(doc.json, {
    '@context': [
      'https://www.w3.org/ns/did/v1',
      'https://w3id.org/security/multikey/v1',
      'https://w3id.org/security/suites/secp256k1-2019/v1',
    ],
    id: did,
    alsoKnownAs: ['at://bsky.app'],
    verificationMethod: [{
      id: `${did}#atproto`,
      type: 'Multikey',
      controller: did,
      publicKeyMultibase: 'zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF',
    }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://bsky.social' }],
  })
})

test('genesis + update: document, data, log, audit, standin ops', async () => {
  // genesis signed by the second (p256) rotation key, update by the first (k256)
  const signing = await Secp256k1Keypair.create()
  const rot1 = await Secp256k1Keypair.create()
  const rot2 = await P256Keypair.create()
  const genesis = await sign(
    atprotoOp({ rotationKeys: [rot1.did(), rot2.did()], verificationMethods: { atproto: signing.did() } }),
    rot2,
  )
  const did = didOf(genesis)
  assert.match(did, /^did:plc:[a-z2-7]{24}$/)
  await expectAccepted(did, genesis)

  const doc = await get(`/${did}`)
  assert.equal(doc.status, 200)
  assert.deepEqual(doc.json, {
    '@context': [
      'https://www.w3.org/ns/did/v1',
      'https://w3id.org/security/multikey/v1',
      'https://w3id.org/security/suites/secp256k1-2019/v1',
    ],
    id: did,
    alsoKnownAs: ['at://alice.test'],
    verificationMethod: [{
      id: `${did}#atproto`,
      type: 'Multikey',
      controller: did,
      publicKeyMultibase: signing.did().slice('did:key:'.length),
    }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://pds.example.test' }],
  })

  const newSigning = await P256Keypair.create()
  const upd = await sign(
    update(genesis, {
      alsoKnownAs: ['at://alice2.test'],
      verificationMethods: { atproto: newSigning.did() },
    }),
    rot1,
  )
  await expectAccepted(did, upd)

  const doc2 = await get(`/${did}`)
  assert.deepEqual(doc2.json['@context'], [
    'https://www.w3.org/ns/did/v1',
    'https://w3id.org/security/multikey/v1',
    'https://w3id.org/security/suites/ecdsa-2019/v1',
  ])
  assert.deepEqual(doc2.json.alsoKnownAs, ['at://alice2.test'])
  assert.equal(doc2.json.verificationMethod[0].publicKeyMultibase, newSigning.did().slice(8))
  assert.match(doc2.json.verificationMethod[0].publicKeyMultibase, /^zDn/)

  const data = await get(`/${did}/data`)
  assert.equal(data.status, 200)
  assert.deepEqual(data.json, {
    did,
    verificationMethods: { atproto: newSigning.did() },
    rotationKeys: [rot1.did(), rot2.did()],
    alsoKnownAs: ['at://alice2.test'],
    services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: 'https://pds.example.test' } },
  })
  assert.deepEqual((await get(`/${did}/log`)).json, [genesis, upd])
  assert.deepEqual((await get(`/${did}/log/last`)).json, upd)
  const audit = (await get(`/${did}/log/audit`)).json
  assert.equal(audit.length, 2)
  assert.deepEqual(audit.map((e) => Object.keys(e)), Array(2).fill(['did', 'operation', 'cid', 'nullified', 'createdAt']))
  assert.deepEqual(audit.map((e) => [e.did, e.cid, e.nullified]), [[did, cidOf(genesis), false], [did, cidOf(upd), false]])
  assert.deepEqual(audit.map((e) => e.operation), [genesis, upd])
  for (const e of audit) assert.match(e.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  assert.ok(audit[0].createdAt < audit[1].createdAt)

  const all = (await get('/_standin/ops')).json
  const mine = all.filter((e) => e.did === did)
  assert.deepEqual(mine.map((e) => [e.cid, e.operation.prev]), [[cidOf(genesis), null], [cidOf(upd), cidOf(genesis)]])
  assert.ok(mine[0].seq < mine[1].seq)
})

test('genesis rejections: wrong DID, foreign signer, bad/high-S/padded signatures', async () => {
  const id = await newIdentity()
  const other = await newIdentity({ handle: 'bob.test' })
  await expectRejected(other.did, id.genesis, /Hash of genesis operation does not match DID identifier: did:plc:/)
  await expectRejected(id.did.toUpperCase().replace('DID:PLC:', 'did:plc:'), id.genesis, /does not match DID identifier/)

  // signed by a key that is not one of its own rotation keys
  const stranger = await Secp256k1Keypair.create()
  const foreign = await sign(atprotoOp({ rotationKeys: [id.rot1.did()] }), stranger)
  await expectRejected(didOf(foreign), foreign, /Invalid signature on op/)

  // one flipped bit in an otherwise canonical signature
  const bytes = Buffer.from(id.genesis.sig, 'base64url')
  bytes[10] ^= 1
  const flipped = { ...id.genesis, sig: b64url(bytes) }
  await expectRejected(didOf(flipped), flipped, /Invalid signature on op/)

  // high-S twins of valid signatures (k256 and p256): mathematically valid, but not canonical
  for (const [alg, key] of [['ES256K', await Secp256k1Keypair.create()], ['ES256', await P256Keypair.create()]]) {
    const ok = await sign(atprotoOp({ rotationKeys: [key.did()] }), key)
    const unsignedBytes = dagCbor.encode(atprotoOp({ rotationKeys: [key.did()] }))
    const high = toHighS(ok.sig, alg)
    assert.ok(await verifySignature(key.did(), unsignedBytes, high, { allowMalleableSig: true }), 'high-S twin verifies when malleability is allowed')
    assert.equal(await verifySignature(key.did(), unsignedBytes, high), false)
    const op = { ...ok, sig: b64url(high) }
    await expectRejected(didOf(op), op, /Invalid signature on op.*is high-S/)
    await expectAccepted(didOf(ok), ok) // the low-S original is fine
  }

  // "=" padding, standard-base64 alphabet, wrong length
  const k = await Secp256k1Keypair.create()
  const base = await sign(atprotoOp({ rotationKeys: [k.did()] }), k)
  const padded = { ...base, sig: Buffer.from(base.sig, 'base64url').toString('base64') } // "+/" and "=="
  assert.match(padded.sig, /=$/)
  await expectRejected(didOf(padded), padded, /Invalid signature on op.*(padding|alphabet)/)
  const withPad = { ...base, sig: base.sig + '==' }
  await expectRejected(didOf(withPad), withPad, /Invalid signature on op.*without "=" padding/)
  const short = { ...base, sig: b64url(Buffer.from(base.sig, 'base64url').subarray(0, 63)) }
  await expectRejected(didOf(short), short, /Invalid signature on op.*64 bytes/)
})

test('update rejections: non-rotation signer, unknown/stale/null prev', async () => {
  const id = await newIdentity()
  await expectAccepted(id.did, id.genesis)

  // the atproto signing key is not a rotation key
  const bySigningKey = await sign(update(id.genesis, { alsoKnownAs: ['at://evil.test'] }), id.signing)
  await expectRejected(id.did, bySigningKey, /Invalid signature on op.*rotationKey of the previous op/)

  // a rotation key that the *proposed* op adds does not count
  const attacker = await Secp256k1Keypair.create()
  const selfAuthorized = await sign(update(id.genesis, { rotationKeys: [attacker.did()] }), attacker)
  await expectRejected(id.did, selfAuthorized, /Invalid signature on op/)

  // prev that is not an op of this DID
  const other = await newIdentity({ handle: 'carol.test' })
  const wrongPrev = await sign(update(other.genesis, { alsoKnownAs: ['at://x.test'] }), id.rot1)
  await expectRejected(id.did, wrongPrev, /Operations not correctly ordered \(prev \S+ is not an operation of/)

  // prev null on an existing DID
  const { sig, ...unsigned } = id.genesis
  const again = await sign({ ...unsigned, alsoKnownAs: ['at://again.test'] }, id.rot1)
  await expectRejected(id.did, again, /Improperly formatted operation|Operations not correctly ordered/)

  // prev as a non-canonical CID string (base58btc of the same CID)
  const { CID } = await import('multiformats/cid')
  const { base58btc } = await import('multiformats/bases/base58')
  const u = update(id.genesis, { alsoKnownAs: ['at://b58.test'] })
  const b58 = await sign({ ...u, prev: CID.parse(u.prev).toString(base58btc) }, id.rot1)
  await expectRejected(id.did, b58, /must be written as the CIDv1 base32 string/)

  // good update by rot1, then a stale op (prev = genesis) by the same key
  const upd1 = await sign(update(id.genesis, { alsoKnownAs: ['at://alice-new.test'] }), id.rot1)
  await expectAccepted(id.did, upd1)
  const stale = await sign(update(id.genesis, { alsoKnownAs: ['at://stale.test'] }), id.rot1)
  await expectRejected(id.did, stale, /Invalid signature on op.*is not the latest op/)
  const stale2 = await sign(update(id.genesis, { alsoKnownAs: ['at://stale.test'] }), id.rot2)
  await expectRejected(id.did, stale2, /Invalid signature on op.*is not the latest op/)
  assert.deepEqual((await get(`/${id.did}/log`)).json, [id.genesis, upd1])
})

test('recovery: a higher-priority rotation key can fork within 72 h', async () => {
  const id = await newIdentity()
  await expectAccepted(id.did, id.genesis)
  const byLow = await sign(update(id.genesis, { alsoKnownAs: ['at://hijacked.test'] }), id.rot2)
  await expectAccepted(id.did, byLow)
  const recovery = await sign(update(id.genesis, { alsoKnownAs: ['at://recovered.test'] }), id.rot1)
  await expectAccepted(id.did, recovery)
  assert.deepEqual((await get(`/${id.did}/log`)).json, [id.genesis, recovery])
  assert.deepEqual((await get(`/${id.did}/data`)).json.alsoKnownAs, ['at://recovered.test'])
  const audit = (await get(`/${id.did}/log/audit`)).json
  assert.deepEqual(audit.map((e) => [e.cid, e.nullified]), [
    [cidOf(id.genesis), false], [cidOf(byLow), true], [cidOf(recovery), false],
  ])
  // building on the nullified op is refused
  const onNullified = await sign(update(byLow, { alsoKnownAs: ['at://z.test'] }), id.rot1)
  await expectRejected(id.did, onNullified, /is a nullified operation/)
})

test('tombstone: 410 for document and data, no further ops', async () => {
  const id = await newIdentity()
  await expectAccepted(id.did, id.genesis)
  const badTomb = await sign({ type: 'plc_tombstone', prev: cidOf(id.genesis) }, id.signing)
  await expectRejected(id.did, badTomb, /Invalid signature on op/)
  const tomb = await sign({ type: 'plc_tombstone', prev: cidOf(id.genesis) }, id.rot2)
  await expectAccepted(id.did, tomb)

  for (const path of [`/${id.did}`, `/${id.did}/data`]) {
    const r = await get(path)
    assert.equal(r.status, 410)
    assert.deepEqual(r.json, { message: `DID not available: ${id.did}` })
  }
  assert.deepEqual((await get(`/${id.did}/log/last`)).json, tomb)
  assert.deepEqual((await get(`/${id.did}/log`)).json, [id.genesis, tomb])
  const after = await sign({ ...update(id.genesis, {}), prev: cidOf(tomb) }, id.rot1)
  await expectRejected(id.did, after, /Operations not correctly ordered.*tombstoned/)
  const tomb2 = await sign({ type: 'plc_tombstone', prev: cidOf(tomb) }, id.rot1)
  await expectRejected(id.did, tomb2, /tombstoned/)

  // a tombstone cannot create a DID
  const k = await Secp256k1Keypair.create()
  const lone = await sign({ type: 'plc_tombstone', prev: cidOf(id.genesis) }, k)
  await expectRejected('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', lone, /not registered/)
})

test('unknown DIDs: 404 {"message": "DID not registered: ..."}', async () => {
  const did = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
  for (const suffix of ['', '/data', '/log', '/log/last', '/log/audit']) {
    const r = await get(`/${did}${suffix}`)
    assert.equal(r.status, 404, suffix)
    assert.deepEqual(r.json, { message: `DID not registered: ${did}` })
  }
})

test('malformed bodies and field validation', async () => {
  const id = await newIdentity()
  const key = id.rot1
  const did = id.did
  const r1 = await post(did, undefined, { raw: '{"type": "plc_operation",' })
  assert.equal(r1.status, 400)
  assert.equal(typeof r1.json.message, 'string')
  await expectRejected(did, undefined, /Content-Type: application\/json/, 400, { raw: JSON.stringify(id.genesis), contentType: 'text/plain' })
  await expectRejected(did, [id.genesis], /expected a JSON object/)
  await expectRejected(did, 'plc_operation', /expected a JSON object/)
  await expectRejected(did, { ...id.genesis, type: 'plc_update' }, /"type" must be/)

  const { sig, ...noSig } = id.genesis
  await expectRejected(did, noSig, /missing field\(s\) "sig"/)
  const { prev, ...noPrev } = id.genesis
  await expectRejected(did, noPrev, /missing field\(s\) "prev"/)
  await expectRejected(did, { ...id.genesis, handle: 'x' }, /unknown field\(s\) "handle"/)
  await expectRejected(did, { ...id.genesis, sig: 42 }, /sig must be a string/)

  const signedGenesis = async (over) => {
    const op = await sign(atprotoOp({ rotationKeys: [key.did()], ...over }), key)
    return [didOf(op), op]
  }
  const cases = [
    [{ rotationKeys: [] }, /at least one rotation key/],
    [{ rotationKeys: [key.did(), ...Array.from({ length: 5 }, () => key.did())] }, /too many rotation keys/],
    [{ rotationKeys: ['did:web:example.com'] }, /Invalid rotationKey/],
    [{ rotationKeys: [key.did(), 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'] }, /Invalid rotationKey/], // ed25519
    [{ rotationKeys: [key.did(), 'zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg'] }, /Invalid rotationKey/],
    [{ rotationKeys: [key.did(), 42] }, /rotationKeys\[1\] must be a string/],
    [{ verificationMethods: { atproto: 'not-a-did-key' } }, /Invalid verificationMethod key/],
    [{ verificationMethods: { atproto: 'did:key:z0OIl' } }, /Invalid verificationMethod key/], // not base58btc
    [{ verificationMethods: [key.did()] }, /verificationMethods must be an object/],
    [{ verificationMethods: Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, key.did()])) }, /Too many Verification Method entries/],
    [{ services: { atproto_pds: { type: 'AtprotoPersonalDataServer' } } }, /missing field\(s\) "endpoint"/],
    [{ services: { atproto_pds: 'https://pds.example.test' } }, /services.atproto_pds must be an object/],
    [{ services: { atproto_pds: { type: 'X', endpoint: 'https://x', extra: 1 } } }, /unknown field\(s\) "extra"/],
    [{ alsoKnownAs: 'at://alice.test' }, /alsoKnownAs must be an array/],
    [{ alsoKnownAs: [1] }, /alsoKnownAs\[0\] must be a string/],
    [{ alsoKnownAs: ['at://a.test', 'at://a.test'] }, /duplicate alsoKnownAs entry/],
    [{
      alsoKnownAs: Array.from({ length: 10 }, (_, i) => `at://${String(i).padStart(250, 'a')}`),
      services: Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`s${i}`, { type: 'T', endpoint: 'https://' + 'e'.repeat(480) }])),
    }, /Operation too large \(7500 bytes maximum/],
  ]
  for (const [over, pattern] of cases) {
    const [d, op] = await signedGenesis(over)
    await expectRejected(d, op, pattern)
  }
  // ed25519 (and other) keys are fine as verification methods (spec 2025-06)
  const [okDid, okOp] = await signedGenesis({
    verificationMethods: { atproto: id.signing.did(), other: 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK' },
  })
  await expectAccepted(okDid, okOp)
  const doc = (await get(`/${okDid}`)).json
  assert.deepEqual(doc.verificationMethod.map((m) => m.id), [`${okDid}#atproto`, `${okDid}#other`])

  // legacy `create` genesis ops are refused with a clear message
  const legacy = await sign({
    type: 'create', signingKey: key.did(), recoveryKey: key.did(), handle: 'alice.test',
    service: 'https://pds.example.test', prev: null,
  }, key)
  await expectRejected(didOf(legacy), legacy, /legacy `create`/)

  // bodies over 100 KiB
  await expectRejected(did, undefined, /too large/, 413, { raw: JSON.stringify({ pad: 'x'.repeat(120 * 1024) }) })
})

test('--port and clean shutdown on SIGTERM / SIGINT', async () => {
  const port = await new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })
  const s2 = await startServer(['--port', String(port), '--tombstone-status', '404'])
  assert.equal(s2.url, `http://127.0.0.1:${port}`)
  assert.equal((await fetch(`${s2.url}/_health`)).status, 200)
  s2.proc.kill('SIGINT')
  assert.deepEqual(await s2.exited, { code: 0, signal: null })
  assert.equal(s2.out(), '', 'nothing after the URL line on stdout')

  server.proc.kill('SIGTERM')
  assert.deepEqual(await server.exited, { code: 0, signal: null })
  assert.equal(server.out(), '')
  assert.equal(server.err(), '', 'no internal errors logged')
})
