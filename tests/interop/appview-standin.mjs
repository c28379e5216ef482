#!/usr/bin/env node
// In-memory stand-in for an AppView (api.bsky.app), for testing a PDS's
// service proxying. See README.md ("appview-standin.mjs") for the contract.
//
//   node tests/interop/appview-standin.mjs --plc http://127.0.0.1:PLCPORT
//        [--did did:web:appview.test] [--alt-aud AUD]... [--port N] [--verbose]
//
// Listens on 127.0.0.1 (port 0 = any free port), prints exactly one line on
// stdout, {"url":"http://127.0.0.1:<port>","did":"<its DID>"}, then serves
// until SIGTERM/SIGINT (exit 0). Every /xrpc/<nsid> request must carry an
// atproto service-auth JWT (Authorization: Bearer), verified with the
// reference @atproto/xrpc-server verifyJwt (as the reference AppView,
// packages/bsky/src/auth-verifier.ts, does) plus stricter claim checks; the
// signing key is the #atproto Multikey of the issuer's DID document, fetched
// from the PLC directory on every request (no cache). Everything observed is
// served on GET /_standin/log.
import './lib/quiet.mjs'
import { createServer } from 'node:http'
import { parseDidKey, verifySignature } from '@atproto/crypto'
import { cryptoVerifySignatureWithKey, verifyJwt } from '@atproto/xrpc-server'

const MAX_BODY_BYTES = 10 * 1024 * 1024
/** exp may be at most this far in the future (the reference PDS uses 60 s; getServiceAuth allows up to 1 h) */
const MAX_EXP_AHEAD_S = 60 * 60
/** tolerated clock difference for exp (upper bound) and iat (not in the future) */
const CLOCK_SKEW_S = 60
const ALLOWED_ALGS = ['ES256K', 'ES256']
const HEADERS_OF_INTEREST = [
  'atproto-proxy',
  'accept-language',
  'atproto-accept-labelers',
  'content-type',
  'content-length',
  'content-encoding',
  'accept-encoding',
  'if-none-match',
  'x-bsky-topics',
]

// ---------------------------------------------------------------------------
// arguments

function parseArgs(argv) {
  const opts = { port: 0, plc: null, did: 'did:web:appview.test', altAud: [], verbose: false }
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
    } else if (a === '--plc') {
      const s = val()
      let u
      try {
        u = new URL(s)
      } catch {
        throw new Error(`bad --plc URL ${s}`)
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`bad --plc URL ${s}`)
      opts.plc = u.origin
    } else if (a === '--did') {
      const s = val()
      if (!/^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/.test(s)) throw new Error(`bad --did ${s}`)
      opts.did = s
    } else if (a === '--alt-aud') {
      opts.altAud.push(val())
    } else if (a === '--verbose') {
      opts.verbose = true
    } else {
      throw new Error(
        `unknown argument ${a} (usage: appview-standin.mjs --plc URL [--did DID] [--alt-aud AUD]... [--port N] [--verbose])`,
      )
    }
  }
  if (!opts.plc) throw new Error('--plc URL is required')
  return opts
}

// ---------------------------------------------------------------------------
// helpers

class HttpError extends Error {
  constructor(status, error, message, extra = {}) {
    super(message)
    this.status = status
    this.error = error
    this.extra = extra
  }
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  })
  res.end(text)
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let size = 0
    let tooBig = false
    req.on('data', (c) => {
      size += c.length
      if (size > MAX_BODY_BYTES) {
        tooBig = true
        chunks.length = 0
        return
      }
      chunks.push(c)
    })
    req.on('end', () => (tooBig ? reject(new HttpError(413, 'PayloadTooLarge', 'request body too large')) : resolve(Buffer.concat(chunks))))
    req.on('error', reject)
  })
}

/** URLSearchParams -> {k: v} (repeated keys -> [v1, v2, ...]) */
function queryObject(params) {
  const out = {}
  for (const [k, v] of params) {
    if (Object.prototype.hasOwnProperty.call(out, k)) {
      out[k] = Array.isArray(out[k]) ? [...out[k], v] : [out[k], v]
    } else {
      out[k] = v
    }
  }
  return out
}

function decodeJwtPart(part) {
  if (typeof part !== 'string' || !/^[A-Za-z0-9_-]*$/.test(part)) return { error: 'not base64url' }
  try {
    return { value: JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) }
  } catch (err) {
    return { error: `not JSON (${err.message})` }
  }
}

const isObj = (v) => typeof v === 'object' && v !== null && !Array.isArray(v)

// ---------------------------------------------------------------------------
// signing keys from the PLC directory

/**
 * The reference AppView's getSigningKey: iss "<did>" or "<did>#<service>";
 * the key is #atproto_label for "#atproto_labeler" issuers, else #atproto.
 * Returns { didKey, doc } or throws HttpError.
 */
async function signingKeyFor(opts, iss) {
  const [did, serviceId] = iss.split('#')
  const keyId = serviceId === 'atproto_labeler' ? 'atproto_label' : 'atproto'
  if (!did.startsWith('did:plc:')) {
    throw new HttpError(401, 'BadJwt', `cannot resolve ${did}: this stand-in only resolves did:plc (via ${opts.plc})`, {
      reason: 'UnresolvableIss',
    })
  }
  let res
  try {
    res = await fetch(`${opts.plc}/${did}`)
  } catch (err) {
    throw new HttpError(500, 'InternalServerError', `PLC directory ${opts.plc} unreachable: ${err.message}`)
  }
  if (res.status === 404 || res.status === 410) {
    throw new HttpError(401, 'BadJwt', `identity unknown: ${did} (PLC answered ${res.status})`, { reason: 'IdentityUnknown' })
  }
  if (res.status !== 200) {
    throw new HttpError(500, 'InternalServerError', `PLC directory answered ${res.status} for ${did}`)
  }
  const doc = await res.json()
  if (!isObj(doc) || doc.id !== did) {
    throw new HttpError(401, 'BadJwt', `DID document of ${did} has id ${JSON.stringify(doc?.id)}`, { reason: 'BadDidDocument' })
  }
  const vm = (Array.isArray(doc.verificationMethod) ? doc.verificationMethod : []).find(
    (m) => isObj(m) && (m.id === `#${keyId}` || m.id === `${did}#${keyId}`),
  )
  if (!vm || vm.type !== 'Multikey' || typeof vm.publicKeyMultibase !== 'string') {
    throw new HttpError(401, 'BadJwt', `missing or bad key: ${did} has no #${keyId} Multikey verification method`, {
      reason: 'MissingKey',
    })
  }
  const didKey = `did:key:${vm.publicKeyMultibase}`
  try {
    parseDidKey(didKey) // k256 / p256 only
  } catch (err) {
    throw new HttpError(401, 'BadJwt', `missing or bad key: #${keyId} of ${did}: ${err.message}`, { reason: 'MissingKey' })
  }
  return { didKey, keyId }
}

// ---------------------------------------------------------------------------
// JWT verification

/**
 * Verifies `Authorization: Bearer <jwt>` for a call of `nsid`. Fills
 * `entry.jwt` (decoded header/claims, per-check results) and returns the
 * claims, or throws HttpError (401).
 */
async function verifyServiceAuth(opts, authorization, nsid, entry) {
  if (!authorization) throw new HttpError(401, 'AuthMissing', 'Authentication Required')
  if (!authorization.startsWith('Bearer ')) {
    // the reference AppView treats any non-Bearer scheme (except its admin Basic auth) as no credentials
    throw new HttpError(401, 'AuthMissing', `Authentication Required (expected "Bearer <jwt>", got scheme ${JSON.stringify(authorization.split(' ')[0])})`)
  }
  const token = authorization.slice('Bearer '.length).trim()
  const jwt = { header: null, claims: null, checks: {}, audForm: null, signingKey: null }
  entry.jwt = jwt
  const fail = (message, reason) => {
    throw new HttpError(401, 'BadJwt', message, { reason })
  }

  const parts = token.split('.')
  if (parts.length !== 3) fail('poorly formatted jwt (expected 3 dot-separated parts)', 'BadJwt')
  const header = decodeJwtPart(parts[0])
  const payload = decodeJwtPart(parts[1])
  jwt.header = header.value ?? { error: header.error }
  jwt.claims = payload.value ?? { error: payload.error }
  if (!isObj(header.value)) fail(`poorly formatted jwt header (${header.error ?? 'not an object'})`, 'BadJwt')
  if (!isObj(payload.value)) fail(`poorly formatted jwt payload (${payload.error ?? 'not an object'})`, 'BadJwt')
  const h = header.value
  const c = payload.value
  const now = Math.floor(Date.now() / 1000)

  // independent checks, all recorded (the first failure decides the answer below)
  const checks = jwt.checks
  checks.alg = ALLOWED_ALGS.includes(h.alg) ? 'ok' : `alg ${JSON.stringify(h.alg)} is not ES256K or ES256`
  checks.typ = ['at+jwt', 'refresh+jwt', 'dpop+jwt'].includes(h.typ) ? `typ ${JSON.stringify(h.typ)} is not a service token type` : 'ok'
  const issDid = typeof c.iss === 'string' ? c.iss.split('#')[0] : null
  checks.iss = typeof c.iss === 'string' && /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/.test(issDid) && c.iss.split('#').length <= 2 && !c.iss.endsWith('#')
    ? 'ok'
    : `iss ${JSON.stringify(c.iss)} is not a DID (optionally with a #fragment)`
  const allowedAud = [opts.did, `${opts.did}#bsky_appview`, ...opts.altAud]
  if (c.aud === opts.did) jwt.audForm = 'bare'
  else if (typeof c.aud === 'string' && c.aud.startsWith(`${opts.did}#`)) jwt.audForm = c.aud.slice(opts.did.length)
  checks.aud = allowedAud.includes(c.aud) ? 'ok' : `aud ${JSON.stringify(c.aud)} is not one of ${JSON.stringify(allowedAud)}`
  checks.lxm = c.lxm === nsid ? 'ok' : c.lxm === undefined ? `missing lxm (must be ${nsid})` : `lxm ${JSON.stringify(c.lxm)} is not ${nsid}`
  if (typeof c.exp !== 'number' || !Number.isFinite(c.exp)) checks.exp = `exp ${JSON.stringify(c.exp)} is not a number`
  else if (c.exp <= now) checks.exp = `expired (exp ${c.exp} <= now ${now})`
  else if (c.exp > now + MAX_EXP_AHEAD_S + CLOCK_SKEW_S) checks.exp = `exp ${c.exp} is ${c.exp - now} s away (max ${MAX_EXP_AHEAD_S} s)`
  else checks.exp = 'ok'
  if (typeof c.iat !== 'number' || !Number.isFinite(c.iat)) checks.iat = `iat ${JSON.stringify(c.iat)} missing or not a number`
  else if (c.iat > now + CLOCK_SKEW_S) checks.iat = `iat ${c.iat} is in the future (now ${now})`
  else if (typeof c.exp === 'number' && c.iat >= c.exp) checks.iat = `iat ${c.iat} is not before exp ${c.exp}`
  else checks.iat = 'ok'

  // signature (recorded separately from the reference verdict, so a token
  // failing a claim check still tells whether it was properly signed)
  let keyInfo = null
  let keyError = null
  if (checks.iss === 'ok') {
    try {
      keyInfo = await signingKeyFor(opts, c.iss)
      jwt.signingKey = keyInfo.didKey
    } catch (err) {
      keyError = err
      checks.signature = `no key: ${err.message}`
    }
  } else {
    checks.signature = 'not checked (bad iss)'
  }
  if (keyInfo) {
    const msg = Buffer.from(`${parts[0]}.${parts[1]}`, 'utf8')
    const sig = Buffer.from(parts[2], 'base64url')
    try {
      const valid = await cryptoVerifySignatureWithKey(keyInfo.didKey, msg, sig, h.alg)
      checks.signature = valid ? 'ok' : `does not verify against #${keyInfo.keyId} ${keyInfo.didKey}`
      if (valid) {
        jwt.lowS = await verifySignature(keyInfo.didKey, msg, sig, { jwtAlg: h.alg, allowMalleableSig: false })
      }
    } catch (err) {
      checks.signature = `could not verify (${err.message})`
    }
  }

  // verdict: extra checks the reference verifyJwt does not make come first
  if (checks.alg !== 'ok') fail(checks.alg, 'BadJwtAlg')
  if (checks.iss !== 'ok') fail(checks.iss, 'BadJwtIss')
  if (checks.iat !== 'ok') fail(checks.iat, 'BadJwtIat')
  if (checks.exp !== 'ok' && !checks.exp.startsWith('expired')) fail(checks.exp, 'BadJwtExp')
  if (keyError && keyError.status !== 401) throw keyError
  // the reference verifier (@atproto/xrpc-server verifyJwt): typ, exp, lxm, iss, signature
  try {
    await verifyJwt(token, null, nsid, async (iss) => {
      if (!keyInfo) throw keyError ?? new HttpError(401, 'BadJwt', checks.signature, { reason: 'MissingKey' })
      return keyInfo.didKey
    })
  } catch (err) {
    if (err instanceof HttpError) throw err
    fail(err.message, err.customErrorName ?? err.error ?? 'BadJwt')
  }
  // the reference AppView checks the audience after verifyJwt
  if (checks.aud !== 'ok') fail(checks.aud, 'BadJwtAudience')
  for (const [k, v] of Object.entries(checks)) {
    if (v !== 'ok') fail(`${k}: ${v}`, 'BadJwt') // cannot happen if the reference agrees
  }
  return c
}

// ---------------------------------------------------------------------------
// state

const log = [] // every request, in arrival order
let seq = 0
/** nsid -> { status, body, headers, times } canned answers set by the test */
const overrides = new Map()

// ---------------------------------------------------------------------------
// XRPC

function answer(nsid, claims, query, body) {
  const issDid = claims.iss.split('#')[0]
  switch (nsid) {
    case 'app.bsky.actor.getProfile': {
      const actor = typeof query.actor === 'string' ? query.actor : null
      return { did: actor && actor.startsWith('did:') ? actor : issDid, handle: 'stub.test' }
    }
    case 'app.bsky.feed.getTimeline':
      return { feed: [] }
    default: {
      const out = { ok: true, nsid, iss: claims.iss, aud: claims.aud, query }
      if (body !== undefined) out.body = body
      return out
    }
  }
}

async function handleXrpc(req, res, opts, url, entry) {
  const nsid = decodeURIComponent(url.pathname.slice('/xrpc/'.length))
  entry.nsid = nsid
  const query = queryObject(url.searchParams)
  entry.query = query
  if (req.method === 'POST') {
    const raw = await readBody(req)
    entry.bodyBytes = raw.length
    const ctype = String(req.headers['content-type'] ?? '')
    if (/^application\/(?:[\w.+-]+\+)?json\b/i.test(ctype)) {
      try {
        entry.body = JSON.parse(raw.toString('utf8'))
      } catch (err) {
        entry.bodyError = `invalid JSON: ${err.message}`
        entry.bodyText = raw.toString('utf8').slice(0, 4096)
      }
    } else if (raw.length > 0) {
      entry.bodyBase64 = raw.subarray(0, 64 * 1024).toString('base64')
    }
  } else if (req.method !== 'GET' && req.method !== 'HEAD') {
    throw new HttpError(405, 'InvalidRequest', 'XRPC requests only supports GET and POST')
  }
  if (!/^[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+){2,}$/.test(nsid)) {
    throw new HttpError(400, 'InvalidRequest', `not an NSID: ${nsid}`)
  }

  try {
    const claims = await verifyServiceAuth(opts, req.headers.authorization, nsid, entry)
    entry.verdict = 'valid'
    const key = overrides.has(nsid) ? nsid : '*'
    const override = overrides.get(key)
    if (override) {
      entry.override = true
      if (override.times !== null && --override.times <= 0) overrides.delete(key)
      entry.status = override.status
      return send(res, override.status, override.body, override.headers)
    }
    const headers = {}
    if (req.headers['atproto-accept-labelers']) headers['atproto-content-labelers'] = req.headers['atproto-accept-labelers']
    entry.status = 200
    return send(res, 200, answer(nsid, claims, query, entry.body), headers)
  } catch (err) {
    if (!(err instanceof HttpError)) throw err
    entry.verdict = err.error === 'AuthMissing' ? 'missing' : err.status === 401 ? 'invalid' : 'error'
    entry.error = { error: err.error, message: err.message, ...err.extra }
    throw err
  }
}

function didDocument(opts, base) {
  return {
    '@context': ['https://www.w3.org/ns/did/v1'],
    id: opts.did,
    service: [
      { id: '#bsky_appview', type: 'BskyAppView', serviceEndpoint: base },
      { id: '#bsky_chat', type: 'BskyChatService', serviceEndpoint: base },
    ],
  }
}

async function handle(req, res, opts, base) {
  const url = new URL(req.url, 'http://127.0.0.1')
  if (url.pathname === '/_standin/log' && req.method === 'GET') {
    return send(res, 200, { did: opts.did, requests: log })
  }
  if (url.pathname === '/_standin/reset' && req.method === 'POST') {
    await readBody(req)
    log.length = 0
    overrides.clear()
    return send(res, 200, { ok: true })
  }
  if (url.pathname === '/_standin/override' && req.method === 'POST') {
    let o
    try {
      o = JSON.parse((await readBody(req)).toString('utf8'))
    } catch (err) {
      throw new HttpError(400, 'InvalidRequest', `invalid JSON: ${err.message}`)
    }
    if (!isObj(o) || typeof o.nsid !== 'string' || !Number.isInteger(o.status) || o.status < 100 || o.status > 599) {
      throw new HttpError(400, 'InvalidRequest', 'expected {"nsid": "<nsid>"|"*", "status": N, "body"?: {...}, "headers"?: {...}, "times"?: N}')
    }
    if (o.times === 0) {
      overrides.delete(o.nsid)
    } else {
      overrides.set(o.nsid, {
        status: o.status,
        body: o.body ?? {},
        headers: isObj(o.headers) ? o.headers : {},
        times: Number.isInteger(o.times) ? o.times : null,
      })
    }
    return send(res, 200, { ok: true })
  }
  if (url.pathname === '/.well-known/did.json' && req.method === 'GET' && opts.did.startsWith('did:web:')) {
    return send(res, 200, didDocument(opts, base))
  }
  if (url.pathname === '/xrpc/_health') return send(res, 200, { version: 'appview-standin' })
  if (url.pathname.startsWith('/xrpc/')) {
    const entry = {
      seq: ++seq,
      time: new Date().toISOString(),
      method: req.method,
      path: url.pathname,
      nsid: null,
      query: {},
      headers: {},
      verdict: null,
    }
    for (const name of HEADERS_OF_INTEREST) {
      if (req.headers[name] !== undefined) entry.headers[name] = req.headers[name]
    }
    entry.headers.authorization = req.headers.authorization === undefined
      ? null
      : req.headers.authorization.startsWith('Bearer ') ? 'Bearer <jwt>' : '<other>'
    log.push(entry)
    try {
      return await handleXrpc(req, res, opts, url, entry)
    } catch (err) {
      if (err instanceof HttpError) {
        entry.status = err.status
        entry.verdict ??= 'error'
        entry.error ??= { error: err.error, message: err.message }
      }
      throw err
    }
  }
  throw new HttpError(404, 'NotFound', `not found: ${req.method} ${url.pathname}`)
}

async function main() {
  let opts
  try {
    opts = parseArgs(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`appview-standin: ${err.message}\n`)
    process.exit(2)
  }
  let base = null
  const server = createServer((req, res) => {
    handle(req, res, opts, base)
      .catch((err) => {
        if (err instanceof HttpError) {
          const body = { error: err.error, message: err.message }
          if (err.extra.reason) body.reason = err.extra.reason
          return send(res, err.status, body)
        }
        process.stderr.write(`appview-standin: internal error: ${err.stack ?? err}\n`)
        return send(res, 500, { error: 'InternalServerError', message: 'Internal Server Error' })
      })
      .finally(() => {
        if (opts.verbose) process.stderr.write(`appview-standin: ${req.method} ${req.url} -> ${res.statusCode}\n`)
      })
  })
  server.keepAliveTimeout = 1000
  server.on('error', (err) => {
    process.stderr.write(`appview-standin: ${err.message}\n`)
    process.exit(1)
  })
  server.listen(opts.port, '127.0.0.1', () => {
    const { port } = server.address()
    base = `http://127.0.0.1:${port}`
    process.stdout.write(JSON.stringify({ url: base, did: opts.did }) + '\n')
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
