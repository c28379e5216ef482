#!/usr/bin/env node
// In-memory stand-in for a relay (bsky.network), for testing a PDS's
// com.atproto.sync.requestCrawl calls and its relay watchdog. See README.md
// ("relay-standin.mjs") for the contract.
//
//   node tests/interop/relay-standin.mjs [--port N] [--reconnect] [--no-backfill] [--verbose]
//
// Listens on 127.0.0.1 (port 0 = any free port), prints exactly one line on
// stdout, {"url":"http://127.0.0.1:<port>"}, then serves until SIGTERM/SIGINT
// (exit 0). On requestCrawl it subscribes to the host's
// com.atproto.sync.subscribeRepos (ws:// for 127.0.0.1 / localhost / [::1],
// wss:// otherwise), backfills the host's com.atproto.sync.listRepos, and
// tracks per repo the latest rev / commit CID (#commit, #sync) and account
// status (#account). Tests make it misbehave with POST /_standin/mode.
import './lib/quiet.mjs'
import { createServer } from 'node:http'
import * as dagCbor from '@ipld/dag-cbor'
import { decodeFirst } from 'cborg'
import { CID } from 'multiformats/cid'
import WebSocket from 'ws'

const MAX_BODY_BYTES = 64 * 1024
const MAX_LOGGED_EVENTS = 20000
const MODES = ['normal', 'lagging', 'down', 'forget']
const DID_RE = /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/
// lexicon errors of getLatestCommit for inactive accounts
const INACTIVE_ERRORS = {
  takendown: 'RepoTakendown',
  suspended: 'RepoSuspended',
  deactivated: 'RepoDeactivated',
  deleted: 'RepoNotFound',
}

// ---------------------------------------------------------------------------
// arguments

function parseArgs(argv) {
  const opts = { port: 0, reconnect: false, backfill: true, verbose: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--port') {
      const s = argv[++i]
      if (s === undefined || !/^\d+$/.test(s) || Number(s) > 65535) throw new Error(`bad --port ${s}`)
      opts.port = Number(s)
    } else if (a === '--reconnect') {
      opts.reconnect = true
    } else if (a === '--no-backfill') {
      opts.backfill = false
    } else if (a === '--verbose') {
      opts.verbose = true
    } else {
      throw new Error(`unknown argument ${a} (usage: relay-standin.mjs [--port N] [--reconnect] [--no-backfill] [--verbose])`)
    }
  }
  return opts
}

let opts

const verbose = (msg) => {
  if (opts.verbose) process.stderr.write(`relay-standin: ${msg}\n`)
}

// ---------------------------------------------------------------------------
// state

let mode = 'normal'
/** did -> { did, rev, cid, active, status, handle, host, lastSeq, updatedAt, source } */
const repos = new Map()
/** did -> handle from #identity (may precede the account's first #account / #commit) */
const handles = new Map()
/** hostname -> host record (see subscribe()) */
const hosts = new Map()
const crawls = [] // requestCrawl calls
const events = [] // frames consumed (and backfill results), oldest dropped past MAX_LOGGED_EVENTS
let eventsDropped = 0
const modeChanges = []

function logEvent(e) {
  events.push({ time: new Date().toISOString(), ...e })
  if (events.length > MAX_LOGGED_EVENTS) {
    events.shift()
    eventsDropped++
  }
}

const applying = () => mode === 'normal'

function repoFor(did, host) {
  let r = repos.get(did)
  if (!r) {
    r = { did, rev: null, cid: null, active: true, status: null, handle: handles.get(did) ?? null, host, lastSeq: null, updatedAt: null, source: null }
    repos.set(did, r)
  }
  return r
}

// ---------------------------------------------------------------------------
// frames

/** Decodes one binary firehose message: DAG-CBOR header, then DAG-CBOR body. */
function decodeFrame(bytes) {
  const [header, rest] = decodeFirst(bytes, dagCbor.decodeOptions)
  if (rest.length === 0) throw new Error('frame has a header but no body')
  const body = dagCbor.decode(rest) // throws on trailing bytes
  if (typeof header !== 'object' || header === null || (header.op !== 1 && header.op !== -1)) {
    throw new Error(`bad frame header ${JSON.stringify(header)}`)
  }
  if (header.op === 1 && typeof header.t !== 'string') throw new Error('message frame header without "t"')
  return { header, body }
}

function readVarint(bytes, pos) {
  let value = 0
  let shift = 0
  for (;;) {
    if (pos >= bytes.length) throw new Error('truncated varint')
    const b = bytes[pos++]
    value += (b & 0x7f) * 2 ** shift
    if ((b & 0x80) === 0) return [value, pos]
    shift += 7
    if (shift > 49) throw new Error('varint too long')
  }
}

/** First root of a CARv1 (the commit CID of #commit / #sync blocks). */
function carRoot(bytes) {
  const [len, pos] = readVarint(bytes, 0)
  const header = dagCbor.decode(bytes.subarray(pos, pos + len))
  if (header?.version !== 1 || !Array.isArray(header.roots) || header.roots.length === 0) {
    throw new Error(`bad CAR header ${JSON.stringify(header)}`)
  }
  const root = CID.asCID(header.roots[0])
  if (!root) throw new Error('CAR root is not a CID')
  return root.toString()
}

const cidString = (v) => CID.asCID(v)?.toString() ?? null

/** Logs and (in normal mode) applies one decoded frame from `host`. */
function consume(host, header, body) {
  const e = { host: host.hostname, conn: host.connects, op: header.op }
  if (header.op === -1) {
    Object.assign(e, { type: 'error', error: body?.error, message: body?.message, applied: false })
    logEvent(e)
    return
  }
  const type = header.t
  const seq = body?.seq
  Object.assign(e, { type, seq })
  const problems = []
  if (type !== '#info') {
    if (!Number.isInteger(seq)) problems.push(`seq ${JSON.stringify(seq)} is not an integer`)
    else if (host.lastSeqReceived !== null && seq <= host.lastSeqReceived) {
      problems.push(`seq ${seq} not after the previous ${host.lastSeqReceived}`)
    }
    if (Number.isInteger(seq)) host.lastSeqReceived = seq
  }
  let update = null // function applying the event
  switch (type) {
    case '#commit': {
      const did = body.repo
      const commit = cidString(body.commit)
      Object.assign(e, { did, rev: body.rev, since: body.since ?? null, commit, ops: Array.isArray(body.ops) ? body.ops.length : null })
      if (!commit) problems.push('commit is not a CID link')
      if (body.blocks instanceof Uint8Array) {
        e.blocksBytes = body.blocks.length
        try {
          const root = carRoot(body.blocks)
          if (root !== commit) problems.push(`blocks CAR root ${root} is not the commit ${commit}`)
        } catch (err) {
          problems.push(`blocks: ${err.message}`)
        }
      } else {
        problems.push('blocks is not bytes')
      }
      if (typeof did !== 'string' || typeof body.rev !== 'string' || !commit) break
      update = () => {
        const r = repoFor(did, host.hostname)
        if (!r.active) problems.push(`#commit for an inactive account (status ${r.status})`)
        // (not checked against a rev learnt from listRepos: the backfill races the live stream)
        if (r.rev !== null && r.source !== 'listRepos') {
          if (body.since !== undefined && body.since !== null && body.since !== r.rev) {
            problems.push(`since ${body.since} is not the last known rev ${r.rev}`)
          }
          if (body.rev <= r.rev) problems.push(`rev ${body.rev} not after the last known rev ${r.rev}`)
        }
        Object.assign(r, { rev: body.rev, cid: commit, lastSeq: seq, source: '#commit' })
      }
      break
    }
    case '#sync': {
      const did = body.did
      Object.assign(e, { did, rev: body.rev })
      let commit = null
      if (body.blocks instanceof Uint8Array) {
        e.blocksBytes = body.blocks.length
        try {
          commit = carRoot(body.blocks)
        } catch (err) {
          problems.push(`blocks: ${err.message}`)
        }
      } else {
        problems.push('blocks is not bytes')
      }
      e.commit = commit
      if (typeof did !== 'string' || typeof body.rev !== 'string' || !commit) break
      update = () => {
        const r = repoFor(did, host.hostname)
        Object.assign(r, { rev: body.rev, cid: commit, lastSeq: seq, source: '#sync' })
      }
      break
    }
    case '#account': {
      const did = body.did
      Object.assign(e, { did, active: body.active, status: body.status ?? null })
      if (typeof body.active !== 'boolean') problems.push('active is not a boolean')
      if (body.active === true && body.status !== undefined) problems.push(`active account with status ${body.status}`)
      if (typeof did !== 'string' || typeof body.active !== 'boolean') break
      update = () => {
        const r = repoFor(did, host.hostname)
        Object.assign(r, { active: body.active, status: body.active ? null : (body.status ?? null), lastSeq: seq })
      }
      break
    }
    case '#identity': {
      const did = body.did
      Object.assign(e, { did, handle: body.handle ?? null })
      if (typeof did !== 'string') break
      update = () => {
        handles.set(did, body.handle ?? null)
        const r = repos.get(did)
        if (r) Object.assign(r, { handle: body.handle ?? null, lastSeq: seq })
      }
      break
    }
    case '#info':
      Object.assign(e, { name: body?.name, message: body?.message ?? null })
      break
    default:
      problems.push(`unknown message type ${type}`)
  }
  if (!DID_RE.test(e.did ?? 'did:x:y')) problems.push(`did ${JSON.stringify(e.did)} is not a DID`)
  e.applied = false
  if (applying()) {
    if (update) {
      update()
      if (repos.has(e.did)) repos.get(e.did).updatedAt = new Date().toISOString()
      e.applied = true
    }
    if (Number.isInteger(seq)) host.cursor = seq
  } else {
    host.missed++
  }
  if (problems.length) e.problems = problems
  logEvent(e)
}

// ---------------------------------------------------------------------------
// subscriptions

function hostUrls(hostname) {
  const bare = hostname.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1')
  const local = bare === '127.0.0.1' || bare === 'localhost' || bare === '::1'
  return { ws: `${local ? 'ws' : 'wss'}://${hostname}`, http: `${local ? 'http' : 'https'}://${hostname}` }
}

/** (Re)connects to `hostname`'s firehose; cursor = undefined for live-only. */
function subscribe(hostname, cursor) {
  let host = hosts.get(hostname)
  if (!host) {
    host = {
      hostname,
      ws: null,
      state: 'new',
      connects: 0,
      cursor: null, // last seq applied
      lastSeqReceived: null,
      missed: 0, // events received but not applied (lagging / down)
      lastError: null,
      closeCode: null,
      connections: [],
      reconnectTimer: null,
    }
    hosts.set(hostname, host)
  }
  closeHost(host)
  const url = `${hostUrls(hostname).ws}/xrpc/com.atproto.sync.subscribeRepos${cursor !== undefined && cursor !== null ? `?cursor=${cursor}` : ''}`
  host.connects++
  host.state = 'connecting'
  host.missed = 0
  host.lastSeqReceived = null
  host.connections.push({ time: new Date().toISOString(), url, cursor: cursor ?? null })
  const ws = new WebSocket(url, { handshakeTimeout: 10000 })
  host.ws = ws
  verbose(`subscribing to ${url}`)
  ws.on('open', () => {
    if (host.ws !== ws) return
    host.state = 'open'
    host.lastError = null
  })
  ws.on('message', (data, isBinary) => {
    if (host.ws !== ws) return // a superseded connection
    if (!isBinary) {
      logEvent({ host: hostname, conn: host.connects, type: 'text', applied: false, problems: ['text WebSocket message (frames must be binary)'] })
      return
    }
    const bytes = new Uint8Array(Array.isArray(data) ? Buffer.concat(data) : data)
    let frame
    try {
      frame = decodeFrame(bytes)
    } catch (err) {
      logEvent({ host: hostname, conn: host.connects, type: 'undecodable', bytes: bytes.length, applied: false, problems: [err.message] })
      return
    }
    try {
      consume(host, frame.header, frame.body)
    } catch (err) {
      logEvent({ host: hostname, conn: host.connects, type: frame.header?.t ?? 'error', applied: false, problems: [`internal: ${err.message}`] })
    }
  })
  ws.on('error', (err) => {
    if (host.ws !== ws) return
    host.lastError = err.message
    verbose(`${hostname}: ${err.message}`)
  })
  ws.on('close', (code) => {
    if (host.ws !== ws) return
    host.state = 'closed'
    host.closeCode = code
    host.ws = null
    verbose(`${hostname}: closed (${code})`)
    if (opts.reconnect && mode !== 'forget') {
      host.reconnectTimer = setTimeout(() => {
        host.reconnectTimer = null
        if (hosts.get(hostname) === host && host.state === 'closed') subscribe(hostname, host.cursor)
      }, 1000)
      host.reconnectTimer.unref()
    }
  })
  return host
}

function closeHost(host) {
  if (host.reconnectTimer) clearTimeout(host.reconnectTimer)
  host.reconnectTimer = null
  const ws = host.ws
  host.ws = null
  if (ws) {
    host.state = 'closed'
    try {
      ws.terminate()
    } catch {
      // already gone
    }
  }
}

/** com.atproto.sync.listRepos of the host, applied where newer than what is known. */
async function backfill(hostname) {
  const base = `${hostUrls(hostname).http}/xrpc/com.atproto.sync.listRepos`
  let cursor
  let pages = 0
  let count = 0
  try {
    do {
      const res = await fetch(`${base}?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      if (res.status !== 200) throw new Error(`listRepos answered ${res.status}: ${(await res.text()).slice(0, 300)}`)
      const page = await res.json()
      if (!Array.isArray(page?.repos)) throw new Error('listRepos answer has no repos array')
      pages++
      for (const r of page.repos) {
        count++
        const e = { host: hostname, type: 'listRepos', did: r.did, rev: r.rev, commit: r.head, active: r.active ?? null, status: r.status ?? null, applied: false }
        if (applying() && typeof r.did === 'string' && typeof r.rev === 'string' && typeof r.head === 'string') {
          const known = repos.get(r.did)
          if (!known || known.rev === null || r.rev > known.rev) {
            const repo = repoFor(r.did, hostname)
            Object.assign(repo, {
              rev: r.rev,
              cid: r.head,
              active: r.active ?? true,
              status: r.active === false ? (r.status ?? null) : null,
              source: 'listRepos',
              updatedAt: new Date().toISOString(),
            })
            e.applied = true
          }
        }
        logEvent(e)
      }
      if (page.cursor && page.cursor === cursor) break
      cursor = page.repos.length ? page.cursor : undefined
    } while (cursor && pages < 1000)
    return { ok: true, pages, repos: count }
  } catch (err) {
    logEvent({ host: hostname, type: 'listRepos', applied: false, problems: [err.message] })
    return { ok: false, error: err.message }
  }
}

function crawl(hostname) {
  const host = hosts.get(hostname)
  if (host && (host.state === 'open' || host.state === 'connecting')) return 'already subscribed'
  const cursor = host ? host.cursor : null
  subscribe(hostname, cursor)
  if (opts.backfill) {
    const h = hosts.get(hostname)
    h.backfill = { state: 'running' }
    backfill(hostname).then((r) => {
      h.backfill = r
    })
  }
  return cursor === null ? 'subscribed (live, no cursor)' : `resubscribed from cursor ${cursor}`
}

function setMode(next, close) {
  const prev = mode
  modeChanges.push({ time: new Date().toISOString(), from: prev, to: next, close: Boolean(close) })
  mode = next
  downClose = next === 'down' && Boolean(close)
  if (next === 'forget') {
    // the relay lost its database: repos, cursors, subscriptions
    repos.clear()
    handles.clear()
    for (const host of hosts.values()) closeHost(host)
    hosts.clear()
  } else if (next === 'normal' && (prev === 'lagging' || prev === 'down')) {
    // catch up on what was received but not applied, from the last applied seq
    for (const host of hosts.values()) {
      if (host.missed > 0 && host.state !== 'closed') subscribe(host.hostname, host.cursor)
    }
  }
}

// ---------------------------------------------------------------------------
// HTTP

let downClose = false

class HttpError extends Error {
  constructor(status, error, message) {
    super(message)
    this.status = status
    this.error = error
  }
}

function send(res, status, body) {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) })
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

async function readJson(req) {
  const raw = await readBody(req)
  const ctype = String(req.headers['content-type'] ?? '')
  if (!/^application\/json\b/i.test(ctype)) {
    throw new HttpError(400, 'InvalidRequest', `expected Content-Type: application/json, got ${JSON.stringify(ctype)}`)
  }
  try {
    return JSON.parse(raw.toString('utf8'))
  } catch (err) {
    throw new HttpError(400, 'InvalidRequest', `invalid JSON: ${err.message}`)
  }
}

function didParam(url) {
  const did = url.searchParams.get('did')
  if (!did) throw new HttpError(400, 'InvalidRequest', 'Error: Params must have the property "did"')
  if (!DID_RE.test(did)) throw new HttpError(400, 'InvalidRequest', `did must be a valid did: ${did}`)
  return did
}

/** hostname[:port], no scheme / path / userinfo */
function validHostname(h) {
  if (typeof h !== 'string' || h.length === 0 || h.length > 300) return false
  return /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(:\d{1,5})?$/.test(h) && !/^[.-]|\.\.|[.-](:|$)/.test(h)
}

function repoStatus(r) {
  const out = { did: r.did, active: r.active }
  if (!r.active && r.status) out.status = r.status
  if (r.active && r.rev) out.rev = r.rev
  return out
}

async function handleXrpc(req, res, url) {
  const nsid = url.pathname.slice('/xrpc/'.length)
  if (nsid === 'com.atproto.sync.requestCrawl') {
    if (req.method !== 'POST') throw new HttpError(405, 'InvalidRequest', 'requestCrawl is a procedure (POST)')
    const entry = { time: new Date().toISOString(), hostname: null, mode, status: null }
    crawls.push(entry)
    try {
      let body
      try {
        body = await readJson(req)
      } catch (err) {
        entry.raw = true
        throw err
      }
      entry.body = body
      entry.hostname = typeof body?.hostname === 'string' ? body.hostname : null
      if (mode === 'down') throw new HttpError(503, 'ServiceUnavailable', 'relay is down (stand-in mode "down")')
      if (typeof body?.hostname !== 'string') throw new HttpError(400, 'InvalidRequest', 'Input must have the property "hostname"')
      if (!validHostname(body.hostname)) {
        throw new HttpError(400, 'InvalidRequest', `hostname must be a bare host name (optionally with :port), got ${JSON.stringify(body.hostname)}`)
      }
      if (mode === 'forget') setMode('normal')
      entry.action = crawl(body.hostname)
      entry.status = 200
      return send(res, 200, {})
    } catch (err) {
      if (err instanceof HttpError) {
        entry.status = err.status
        entry.error = err.error
      }
      throw err
    }
  }
  if (mode === 'down') throw new HttpError(503, 'ServiceUnavailable', 'relay is down (stand-in mode "down")')
  if (nsid === 'com.atproto.sync.getRepoStatus') {
    const did = didParam(url)
    const r = repos.get(did)
    if (!r) throw new HttpError(400, 'RepoNotFound', `Could not find repo for DID: ${did}`)
    return send(res, 200, repoStatus(r))
  }
  if (nsid === 'com.atproto.sync.getLatestCommit') {
    const did = didParam(url)
    const r = repos.get(did)
    if (!r || !r.cid) throw new HttpError(400, 'RepoNotFound', `Could not find repo for DID: ${did}`)
    if (!r.active && INACTIVE_ERRORS[r.status]) {
      throw new HttpError(400, INACTIVE_ERRORS[r.status], `Repo is ${r.status}: ${did}`)
    }
    return send(res, 200, { cid: r.cid, rev: r.rev })
  }
  if (nsid === '_health') return send(res, 200, { version: 'relay-standin' })
  throw new HttpError(501, 'MethodNotImplemented', `Method Not Implemented: ${nsid}`)
}

function snapshot() {
  return {
    mode,
    modeChanges,
    crawls,
    hosts: [...hosts.values()].map((h) => ({
      hostname: h.hostname,
      state: h.state,
      connects: h.connects,
      cursor: h.cursor,
      missed: h.missed,
      lastError: h.lastError,
      closeCode: h.closeCode,
      connections: h.connections,
      backfill: h.backfill ?? null,
    })),
    repos: Object.fromEntries([...repos.values()].map((r) => [r.did, { ...r }])),
    events,
    eventsDropped,
  }
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1')
  if (url.pathname === '/_standin/log' && req.method === 'GET') return send(res, 200, snapshot())
  if (url.pathname === '/_standin/mode' && req.method === 'GET') return send(res, 200, { mode })
  if (url.pathname === '/_standin/mode' && req.method === 'POST') {
    const body = await readJson(req)
    if (!MODES.includes(body?.mode)) throw new HttpError(400, 'InvalidRequest', `mode must be one of ${MODES.join(', ')}`)
    setMode(body.mode, body.close)
    return send(res, 200, { mode })
  }
  if (url.pathname === '/_standin/reset' && req.method === 'POST') {
    await readBody(req)
    crawls.length = 0
    events.length = 0
    eventsDropped = 0
    modeChanges.length = 0
    return send(res, 200, { ok: true })
  }
  if (url.pathname.startsWith('/xrpc/')) {
    if (mode === 'down' && downClose) {
      req.socket.destroy()
      return
    }
    return handleXrpc(req, res, url)
  }
  throw new HttpError(404, 'NotFound', `not found: ${req.method} ${url.pathname}`)
}

function main() {
  try {
    opts = parseArgs(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`relay-standin: ${err.message}\n`)
    process.exit(2)
  }
  const server = createServer((req, res) => {
    handle(req, res)
      .catch((err) => {
        if (err instanceof HttpError) return send(res, err.status, { error: err.error, message: err.message })
        process.stderr.write(`relay-standin: internal error: ${err.stack ?? err}\n`)
        return send(res, 500, { error: 'InternalServerError', message: 'Internal Server Error' })
      })
      .finally(() => verbose(`${req.method} ${req.url} -> ${res.statusCode}`))
  })
  server.keepAliveTimeout = 1000
  server.on('error', (err) => {
    process.stderr.write(`relay-standin: ${err.message}\n`)
    process.exit(1)
  })
  server.listen(opts.port, '127.0.0.1', () => {
    const { port } = server.address()
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}` }) + '\n')
  })
  const stop = () => {
    for (const host of hosts.values()) closeHost(host)
    server.close(() => process.exit(0))
    server.closeAllConnections()
    setTimeout(() => process.exit(0), 500).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main()
