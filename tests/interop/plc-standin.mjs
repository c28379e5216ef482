#!/usr/bin/env node
// In-memory stand-in for the did:plc directory (plc.directory), for atbox's
// integration tests. See README.md ("plc-standin.mjs") for the contract.
//
//   node tests/interop/plc-standin.mjs [--port N] [--tombstone-status 404|410] [--verbose]
//
// Listens on 127.0.0.1 (port 0 = any free port), prints exactly one line on
// stdout, {"url":"http://127.0.0.1:<port>"}, then serves until SIGTERM/SIGINT
// (exit 0). All state is in memory. --verbose logs one line per request to
// stderr.
//
// Validation follows the did:plc spec (v0.3.0) and the reference directory
// (@did-plc/lib + @did-plc/server): strict op schema, size/count limits,
// genesis hash = DID, signature by a rotation key of the previous op (strict
// base64url, 64-byte compact, low-S), prev = CID of an op of the DID, the
// 72 h recovery (nullification) rule, tombstones. Errors: HTTP 400 (or 404 /
// 410 / 413) with {"message": "..."}, as the directory answers.
import './lib/quiet.mjs'
import { createServer } from 'node:http'
import * as dagCbor from '@ipld/dag-cbor'
import { parseDidKey, verifySignature, P256_JWT_ALG, SECP256K1_JWT_ALG } from '@atproto/crypto'
import { CID } from 'multiformats/cid'
import { base32 } from 'multiformats/bases/base32'
import { base58btc } from 'multiformats/bases/base58'
import { base64url } from 'multiformats/bases/base64'
import { sha256 } from 'multiformats/hashes/sha2'

// ---------------------------------------------------------------------------
// Limits (spec "Operation Serialization" + @did-plc/server constraints.ts)

const MAX_OP_BYTES = 7500 // DAG-CBOR of the signed op (spec: "The current limit is 7500 bytes")
const MIN_ROTATION_KEYS = 1
const MAX_ROTATION_KEYS = 5 // spec + @did-plc/lib assureValidOp
const MAX_AKA_ENTRIES = 10
const MAX_AKA_LENGTH = 258 // handle (253) + "at://"
const MAX_SERVICE_ENTRIES = 10
const MAX_SERVICE_TYPE_LENGTH = 256
const MAX_SERVICE_ENDPOINT_LENGTH = 512
const MAX_VERIFICATION_METHOD_ENTRIES = 10
const MAX_ID_LENGTH = 32 // service / verification method ids
const MAX_DID_KEY_LENGTH = 256
const RECOVERY_WINDOW_MS = 72 * 60 * 60 * 1000
const MAX_BODY_BYTES = 100 * 1024 // express.json() default limit

const DAG_CBOR_CODE = 0x71
const CURVE_ORDER = {
  [SECP256K1_JWT_ALG]: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n,
  [P256_JWT_ALG]: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
}

// ---------------------------------------------------------------------------
// Encoding helpers

/** CIDv1, dag-cbor, sha2-256, base32 string ("bafyrei...") of an op. */
async function cidForOp(op) {
  const digest = await sha256.digest(dagCbor.encode(op))
  return CID.create(1, DAG_CBOR_CODE, digest)
}

/** did:plc:<first 24 chars of base32(sha256(dag-cbor(signed genesis op)))> */
async function didForGenesisOp(op) {
  const digest = await sha256.digest(dagCbor.encode(op))
  return `did:plc:${base32.baseEncode(digest.digest).slice(0, 24)}`
}

class HttpError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}
const bad = (message) => new HttpError(400, message)

const isPlainObject = (v) =>
  typeof v === 'object' && v !== null && !Array.isArray(v) &&
  (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)

const json = (v) => JSON.stringify(v)

// ---------------------------------------------------------------------------
// Schema (the reference's zod `.strict()` objects: no missing, no extra keys)

function checkExactKeys(obj, keys, what) {
  const missing = keys.filter((k) => !Object.prototype.hasOwnProperty.call(obj, k))
  const extra = Object.keys(obj).filter((k) => !keys.includes(k))
  if (missing.length || extra.length) {
    const parts = []
    if (missing.length) parts.push(`missing field(s) ${missing.map(json).join(', ')}`)
    if (extra.length) parts.push(`unknown field(s) ${extra.map(json).join(', ')}`)
    throw bad(`Not a valid operation: ${what}: ${parts.join('; ')}`)
  }
}

function checkString(v, where) {
  if (typeof v !== 'string') throw bad(`Not a valid operation: ${where} must be a string, got ${json(v)}`)
}

function checkStringArray(v, where) {
  if (!Array.isArray(v)) throw bad(`Not a valid operation: ${where} must be an array of strings`)
  v.forEach((s, i) => checkString(s, `${where}[${i}]`))
}

function checkStringMap(v, where) {
  if (!isPlainObject(v)) throw bad(`Not a valid operation: ${where} must be an object`)
}

const OP_KEYS = ['type', 'rotationKeys', 'verificationMethods', 'alsoKnownAs', 'services', 'prev', 'sig']
const TOMBSTONE_KEYS = ['type', 'prev', 'sig']

/** Size limit, schema and soft constraints. Returns the op (unchanged). */
function validateIncomingOp(input) {
  if (!isPlainObject(input)) {
    throw bad(`Not a valid operation: expected a JSON object, got ${json(input)}`)
  }
  let size
  try {
    size = dagCbor.encode(input).byteLength
  } catch (err) {
    throw bad(`Not a valid operation: cannot be encoded as DAG-CBOR (${err.message})`)
  }
  if (size > MAX_OP_BYTES) {
    throw bad(`Operation too large (${MAX_OP_BYTES} bytes maximum in cbor encoding, got ${size})`)
  }

  if (input.type === 'create') {
    throw bad(
      'Not a valid operation: legacy `create` genesis operations are no longer accepted by the ' +
        'directory (they only exist in old logs); submit a `plc_operation` with prev: null instead',
    )
  }
  if (input.type === 'plc_tombstone') {
    checkExactKeys(input, TOMBSTONE_KEYS, 'plc_tombstone')
    checkString(input.prev, 'prev')
    checkString(input.sig, 'sig')
    return input
  }
  if (input.type !== 'plc_operation') {
    throw bad(`Not a valid operation: "type" must be "plc_operation" or "plc_tombstone", got ${json(input.type)}`)
  }
  checkExactKeys(input, OP_KEYS, 'plc_operation')
  const op = input
  checkStringArray(op.rotationKeys, 'rotationKeys')
  checkStringMap(op.verificationMethods, 'verificationMethods')
  for (const [id, key] of Object.entries(op.verificationMethods)) checkString(key, `verificationMethods.${id}`)
  checkStringArray(op.alsoKnownAs, 'alsoKnownAs')
  checkStringMap(op.services, 'services')
  for (const [id, svc] of Object.entries(op.services)) {
    if (!isPlainObject(svc)) throw bad(`Not a valid operation: services.${id} must be an object {type, endpoint}`)
    checkExactKeys(svc, ['type', 'endpoint'], `services.${id}`)
    checkString(svc.type, `services.${id}.type`)
    checkString(svc.endpoint, `services.${id}.endpoint`)
  }
  if (op.prev !== null) checkString(op.prev, 'prev (string or null)')
  checkString(op.sig, 'sig')

  // soft constraints (@did-plc/server constraints.ts)
  if (op.alsoKnownAs.length > MAX_AKA_ENTRIES) {
    throw bad(`Too many alsoKnownAs entries (max ${MAX_AKA_ENTRIES})`)
  }
  const akaSeen = new Set()
  for (const aka of op.alsoKnownAs) {
    if (aka.length > MAX_AKA_LENGTH) throw bad(`alsoKnownAs entry too long (max ${MAX_AKA_LENGTH}): ${aka}`)
    if (akaSeen.has(aka)) throw bad(`duplicate alsoKnownAs entry: ${aka}`)
    akaSeen.add(aka)
  }
  if (op.rotationKeys.length < MIN_ROTATION_KEYS) {
    throw bad('Improperly formatted operation, need at least one rotation key')
  }
  if (op.rotationKeys.length > MAX_ROTATION_KEYS) {
    throw bad(`Improperly formatted operation, too many rotation keys (max ${MAX_ROTATION_KEYS})`)
  }
  for (const key of op.rotationKeys) {
    try {
      parseDidKey(key) // did:key, k256 or p256 only
    } catch (err) {
      throw bad(`Invalid rotationKey (must be a k256 or p256 did:key): ${key} (${err.message})`)
    }
  }
  const services = Object.entries(op.services)
  if (services.length > MAX_SERVICE_ENTRIES) throw bad(`Too many service entries (max ${MAX_SERVICE_ENTRIES})`)
  for (const [id, svc] of services) {
    if (id.length > MAX_ID_LENGTH) throw bad(`Service id too long (max ${MAX_ID_LENGTH}): ${id}`)
    if (svc.type.length > MAX_SERVICE_TYPE_LENGTH) throw bad(`Service type too long (max ${MAX_SERVICE_TYPE_LENGTH})`)
    if (svc.endpoint.length > MAX_SERVICE_ENDPOINT_LENGTH) {
      throw bad(`Service endpoint too long (max ${MAX_SERVICE_ENDPOINT_LENGTH})`)
    }
  }
  const methods = Object.entries(op.verificationMethods)
  if (methods.length > MAX_VERIFICATION_METHOD_ENTRIES) {
    throw bad(`Too many Verification Method entries (max ${MAX_VERIFICATION_METHOD_ENTRIES})`)
  }
  for (const [id, key] of methods) {
    if (id.length > MAX_ID_LENGTH) throw bad(`Verification Method id too long (max ${MAX_ID_LENGTH}): ${id}`)
    if (key.length > MAX_DID_KEY_LENGTH) {
      throw bad(`Verification Method key too long (max ${MAX_DID_KEY_LENGTH}): ${key}`)
    }
    // syntax only ("did:key:" + base58btc multibase); any key type (spec 2025-06-05)
    let ok = key.startsWith('did:key:z') && key.length > 'did:key:z'.length
    if (ok) {
      try {
        base58btc.baseDecode(key.slice('did:key:z'.length))
      } catch {
        ok = false
      }
    }
    if (!ok) throw bad(`Invalid verificationMethod key: ${key}`)
  }
  return op
}

// ---------------------------------------------------------------------------
// Signatures

/**
 * Strict sig decoding: base64url alphabet only, no "=" padding, zero trailing
 * bits (canonical), exactly 64 bytes (compact r||s). Returns null if not.
 */
function decodeSig(sig) {
  if (!/^[A-Za-z0-9_-]+$/.test(sig)) return null
  let bytes
  try {
    bytes = base64url.baseDecode(sig)
  } catch {
    return null
  }
  if (bytes.length !== 64 || base64url.baseEncode(bytes) !== sig) return null
  return bytes
}

/** First of `allowedKeys` whose signature verifies, or null. */
async function findSigner(allowedKeys, op) {
  const { sig, ...unsigned } = op
  const sigBytes = decodeSig(sig)
  if (!sigBytes) return null
  const data = dagCbor.encode(unsigned)
  for (const key of allowedKeys) {
    try {
      // @atproto/crypto: compact format only, low-S required (allowMalleableSig defaults to false)
      if (await verifySignature(key, data, sigBytes)) return key
    } catch {
      // unsupported / malformed key: not a signer
    }
  }
  return null
}

function sigProblem(sig) {
  if (sig.endsWith('=')) return 'sig must be base64url without "=" padding'
  if (!/^[A-Za-z0-9_-]+$/.test(sig)) return 'sig must use the base64url alphabet (A-Z a-z 0-9 - _)'
  const bytes = (() => {
    try {
      return base64url.baseDecode(sig)
    } catch {
      return null
    }
  })()
  if (!bytes) return 'sig is not valid base64url (non-zero trailing bits?)'
  if (bytes.length !== 64) return `sig must decode to 64 bytes (compact r||s), got ${bytes.length}`
  return null
}

async function assureValidSig(allowedKeys, op, context) {
  const signer = await findSigner(allowedKeys, op)
  if (signer) return signer
  let why = sigProblem(op.sig)
  if (!why) {
    // diagnose the common bug: a valid signature that was not normalized to low-S
    const { sig, ...unsigned } = op
    const data = dagCbor.encode(unsigned)
    const bytes = decodeSig(sig)
    for (const key of allowedKeys) {
      try {
        const n = CURVE_ORDER[parseDidKey(key).jwtAlg]
        const s = BigInt('0x' + Buffer.from(bytes.subarray(32)).toString('hex'))
        if (!n || s <= n / 2n || s >= n) continue
        const lowS = Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex')
        if (await verifySignature(key, data, Buffer.concat([bytes.subarray(0, 32), lowS]))) {
          why = `the signature by ${key} is high-S; it must be normalized to low-S (s <= n/2)`
          break
        }
      } catch {
        // not this key
      }
    }
  }
  why ??=
    `no key in ${json(allowedKeys)} verifies it over the DAG-CBOR of the op without "sig" ` +
    '(ECDSA-SHA256, compact 64-byte r||s, low-S required)'
  throw bad(`Invalid signature on op: ${json(op)} (${context}: ${why})`)
}

// ---------------------------------------------------------------------------
// State

/** did -> [{ did, operation, cid (string), nullified, createdAt (Date) }] in arrival order */
const logs = new Map()
/** every accepted op, in arrival order (same entry objects) */
const accepted = []
let lastCreatedAt = 0

const activeOps = (did) => (logs.get(did) ?? []).filter((e) => !e.nullified)

function nextCreatedAt() {
  // strictly increasing, so that createdAt order is arrival order
  lastCreatedAt = Math.max(Date.now(), lastCreatedAt + 1)
  return new Date(lastCreatedAt)
}

/**
 * @did-plc/lib assureValidNextOp, with clearer messages. Returns the CIDs
 * (strings) of the ops to nullify.
 */
async function assureValidNextOp(did, proposed) {
  const ops = activeOps(did)

  if (ops.length === 0) {
    // genesis
    if (proposed.type === 'plc_tombstone') {
      throw bad(`Operations not correctly ordered (${did} is not registered; a tombstone cannot create a DID)`)
    }
    if (proposed.prev !== null) {
      throw bad(
        `Improperly formatted operation, expected null prev on create (${did} is not registered, ` +
          `so this must be a genesis op; got prev ${json(proposed.prev)})`,
      )
    }
    await assureValidSig(proposed.rotationKeys, proposed, 'genesis op must be signed by one of its own rotationKeys')
    const expected = await didForGenesisOp(proposed)
    if (expected !== did) {
      throw bad(
        `Hash of genesis operation does not match DID identifier: ${expected} ` +
          `(POSTed to ${did}; the DID is "did:plc:" + first 24 chars of lowercase base32 ` +
          'of sha256(DAG-CBOR(signed op)))',
      )
    }
    return []
  }

  const head = ops[ops.length - 1]
  if (proposed.prev === null) {
    throw bad(`Operations not correctly ordered (${did} already exists: prev must be the CID of its latest op, ${head.cid})`)
  }
  let prevCid
  try {
    prevCid = CID.parse(proposed.prev)
  } catch (err) {
    throw bad(`Operations not correctly ordered (prev ${json(proposed.prev)} is not a CID: ${err.message})`)
  }
  const indexOfPrev = ops.findIndex((e) => CID.parse(e.cid).equals(prevCid))
  if (indexOfPrev < 0) {
    const wasNullified = (logs.get(did) ?? []).some((e) => e.nullified && CID.parse(e.cid).equals(prevCid))
    if (wasNullified) {
      throw bad(
        `Operations not correctly ordered (prev ${proposed.prev} is a nullified operation of ${did}; ` +
          `its latest op is ${head.cid})`,
      )
    }
    throw bad(
      `Operations not correctly ordered (prev ${proposed.prev} is not an operation of ${did}; ` +
        `its latest op is ${head.cid})`,
    )
  }
  const prevEntry = ops[indexOfPrev]
  if (proposed.prev !== prevEntry.cid) {
    // stricter than the reference (which compares parsed CIDs): the spec wants
    // CIDv1 base32 dag-cbor sha-256, and later CIDs hash this exact string.
    throw bad(
      `Operations not correctly ordered (prev ${proposed.prev} must be written as the CIDv1 base32 string ${prevEntry.cid})`,
    )
  }
  if (prevEntry.operation.type === 'plc_tombstone') {
    throw bad(`Operations not correctly ordered (${did} is tombstoned: no operation can follow a tombstone)`)
  }
  const rotationKeys = prevEntry.operation.rotationKeys
  const nullified = ops.slice(indexOfPrev + 1)
  if (nullified.length === 0) {
    await assureValidSig(rotationKeys, proposed, `must be signed by a rotationKey of the previous op ${prevEntry.cid}`)
    return []
  }

  // prev is not the head: a recovery fork, only for a higher-priority key, within 72 h
  const first = nullified[0]
  const disputedSigner = await findSigner(rotationKeys, first.operation)
  const indexOfSigner = rotationKeys.indexOf(disputedSigner)
  const morePowerful = rotationKeys.slice(0, Math.max(indexOfSigner, 0))
  await assureValidSig(
    morePowerful,
    proposed,
    `prev ${proposed.prev} is not the latest op of ${did} (that is ${head.cid}); an op that forks ` +
      `from an earlier op (nullifying ${nullified.length} later op(s)) must be signed by a rotation key ` +
      `listed before ${disputedSigner}, which signed ${first.cid}`,
  )
  const lapsed = Date.now() - first.createdAt.getTime()
  if (lapsed > RECOVERY_WINDOW_MS) {
    throw bad(
      `Recovery operation occurred outside of the allowed 72 hr recovery window. Time lapsed: ${lapsed}`,
    )
  }
  return nullified.map((e) => e.cid)
}

// serialize POSTs (the reference takes a row lock per DID)
let chain = Promise.resolve()
function serialized(fn) {
  const run = chain.then(fn, fn)
  chain = run.catch(() => {})
  return run
}

async function addOp(did, body) {
  const op = validateIncomingOp(body)
  const nullify = await assureValidNextOp(did, op)
  const cid = (await cidForOp(op)).toString()
  for (const e of logs.get(did) ?? []) {
    if (nullify.includes(e.cid)) e.nullified = true
  }
  const entry = { did, operation: op, cid, nullified: false, createdAt: nextCreatedAt() }
  if (!logs.has(did)) logs.set(did, [])
  logs.get(did).push(entry)
  accepted.push(entry)
  return entry
}

// ---------------------------------------------------------------------------
// DID document (@did-plc/lib formatDidDoc)

function opToData(did, op) {
  const { verificationMethods, rotationKeys, alsoKnownAs, services } = op
  return { did, verificationMethods, rotationKeys, alsoKnownAs, services }
}

function formatDidDoc(data) {
  const context = ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1']
  const verificationMethod = []
  for (const [id, key] of Object.entries(data.verificationMethods)) {
    let keyContext = null
    try {
      const { jwtAlg } = parseDidKey(key)
      if (jwtAlg === P256_JWT_ALG) keyContext = 'https://w3id.org/security/suites/ecdsa-2019/v1'
      if (jwtAlg === SECP256K1_JWT_ALG) keyContext = 'https://w3id.org/security/suites/secp256k1-2019/v1'
    } catch {
      // other key types (allowed since 2025-06): Multikey without a suite context
    }
    if (keyContext && !context.includes(keyContext)) context.push(keyContext)
    verificationMethod.push({
      id: `${data.did}#${id}`,
      type: 'Multikey',
      controller: data.did,
      publicKeyMultibase: key.replace(/^did:key:/, ''),
    })
  }
  const service = Object.entries(data.services).map(([id, svc]) => ({
    id: `#${id}`,
    type: svc.type,
    serviceEndpoint: svc.endpoint,
  }))
  return { '@context': context, id: data.did, alsoKnownAs: data.alsoKnownAs, verificationMethod, service }
}

const auditEntry = (e) => ({
  did: e.did,
  operation: e.operation,
  cid: e.cid,
  nullified: e.nullified,
  createdAt: e.createdAt.toISOString(),
})

// ---------------------------------------------------------------------------
// HTTP

function parseArgs(argv) {
  const opts = { port: 0, tombstoneStatus: 410, verbose: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--port') {
      const s = val()
      if (!/^\d+$/.test(s) || Number(s) > 65535) throw new Error(`bad --port ${s}`)
      opts.port = Number(s)
    } else if (a === '--tombstone-status') {
      const s = val()
      if (s !== '404' && s !== '410') throw new Error('--tombstone-status must be 404 or 410')
      opts.tombstoneStatus = Number(s)
    } else if (a === '--verbose') {
      opts.verbose = true
    } else {
      throw new Error(`unknown argument ${a} (usage: plc-standin.mjs [--port N] [--tombstone-status 404|410] [--verbose])`)
    }
  }
  return opts
}

function send(res, status, body, contentType = 'application/json; charset=utf-8') {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  // As plc.directory: readable from browser apps (which resolve DIDs themselves).
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text), 'Access-Control-Allow-Origin': '*' })
  res.end(text)
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let size = 0
    req.on('data', (c) => {
      if (size > MAX_BODY_BYTES) return // already rejected; drain
      size += c.length
      if (size > MAX_BODY_BYTES) {
        chunks.length = 0
        reject(new HttpError(413, 'request entity too large'))
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function lookup(did) {
  const ops = activeOps(did)
  if (ops.length === 0) throw new HttpError(404, `DID not registered: ${did}`)
  const last = ops[ops.length - 1]
  return { ops, last, gone: last.operation.type === 'plc_tombstone' }
}

async function handle(req, res, opts) {
  const url = new URL(req.url, 'http://127.0.0.1')
  let parts
  try {
    parts = url.pathname.split('/').slice(1).map(decodeURIComponent)
  } catch {
    throw new HttpError(400, `bad URL path ${url.pathname}`)
  }
  const method = req.method

  if (method === 'GET' && parts.length === 1 && parts[0] === '_health') {
    return send(res, 200, { version: 'standin' })
  }
  if (method === 'GET' && parts.length === 2 && parts[0] === '_standin' && parts[1] === 'ops') {
    return send(res, 200, accepted.map((e, i) => ({ seq: i + 1, ...auditEntry(e) })))
  }

  const did = parts[0]
  if (!did) throw new HttpError(404, `not found: ${method} ${url.pathname}`)
  const rest = parts.slice(1).join('/')

  if (method === 'POST' && rest === '') {
    const ctype = String(req.headers['content-type'] ?? '')
    const raw = await readBody(req)
    if (!/^application\/json\b/i.test(ctype)) {
      throw bad(`Not a valid operation: expected Content-Type: application/json, got ${json(ctype)}`)
    }
    let body
    try {
      body = JSON.parse(raw.toString('utf8'))
    } catch (err) {
      throw bad(err.message)
    }
    const entry = await serialized(() => addOp(did, body))
    if (opts.verbose) process.stderr.write(`plc-standin: accepted ${entry.operation.type} ${entry.cid} for ${did}\n`)
    return send(res, 200, 'OK', 'text/plain; charset=utf-8')
  }

  if (method !== 'GET') throw new HttpError(404, `not found: ${method} ${url.pathname}`)

  switch (rest) {
    case '': {
      const { last, gone } = lookup(did)
      if (gone) throw new HttpError(opts.tombstoneStatus, `DID not available: ${did}`)
      const doc = formatDidDoc(opToData(did, last.operation))
      return send(res, 200, doc, 'application/did+ld+json; charset=utf-8')
    }
    case 'data': {
      const { last, gone } = lookup(did)
      if (gone) throw new HttpError(opts.tombstoneStatus, `DID not available: ${did}`)
      return send(res, 200, opToData(did, last.operation))
    }
    case 'log':
      return send(res, 200, lookup(did).ops.map((e) => e.operation))
    case 'log/last':
      return send(res, 200, lookup(did).last.operation)
    case 'log/audit': {
      const all = logs.get(did) ?? []
      if (all.length === 0) throw new HttpError(404, `DID not registered: ${did}`)
      return send(res, 200, all.map(auditEntry))
    }
    default:
      throw new HttpError(404, `not found: ${method} ${url.pathname}`)
  }
}

async function main() {
  let opts
  try {
    opts = parseArgs(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`plc-standin: ${err.message}\n`)
    process.exit(2)
  }
  const server = createServer((req, res) => {
    handle(req, res, opts)
      .catch((err) => {
        if (err instanceof HttpError) return send(res, err.status, { message: err.message })
        process.stderr.write(`plc-standin: internal error: ${err.stack ?? err}\n`)
        return send(res, 500, { message: 'Internal Server Error' })
      })
      .finally(() => {
        if (opts.verbose) process.stderr.write(`plc-standin: ${req.method} ${req.url} -> ${res.statusCode}\n`)
      })
  })
  server.keepAliveTimeout = 1000
  server.on('error', (err) => {
    process.stderr.write(`plc-standin: ${err.message}\n`)
    process.exit(1)
  })
  server.listen(opts.port, '127.0.0.1', () => {
    const { port } = server.address()
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}` }) + '\n')
  })
  const stop = () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
    setTimeout(() => process.exit(0), 500).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main()
