#!/usr/bin/env node
// Relay-grade validator of a PDS's com.atproto.sync.subscribeRepos firehose
// (sync v1.1). See README.md ("firehose-consumer.mjs") for the contract.
//
//   node tests/interop/firehose-consumer.mjs --url ws://127.0.0.1:PORT --plc http://127.0.0.1:PORT2 \
//        [--cursor N] [--until-seq N] [--timeout-ms 30000] [--idle-ms N] [--allow-gaps]
//        [--save-frames FILE]
//
// stdout: one JSON line per received frame ({"seq":..,"type":"#commit",..,"ok":true|false}),
// then a summary line {"summary":true,...} and "N passed, M failed" alone on the
// last line. Exit 0 iff no invalid event, no seq gap (unless --allow-gaps), no
// connection error and --until-seq (if given) was reached; 1 otherwise; 2 on
// bad arguments.
//
// Verification is done by the reference implementation wherever it has the
// function: frame decoding (@atproto/xrpc-server Frame, @atproto/lex-cbor),
// message schemas (@atproto/sync's subscribeRepos lexicon, the validator its
// Firehose class applies, and @atproto/api's lexicons), DID documents
// (@atproto/identity IdResolver), CAR/commit/signature/MST (@atproto/repo
// readCarWithRoot, def.commit, verifyCommitSig, verifyProofs, MST), and the
// official consumer path (@atproto/sync parseCommitAuthenticated, parseSync,
// parseAccount). The sync-1.1 "inductive" check (invert the ops on the new MST
// and compare with prevData) has no JS implementation in @atproto/*; it is done
// here on @atproto/repo's MST, following indigo's atproto/repo
// VerifyCommitMessage / mst.InvertOp (what the Go relay runs).
import './lib/quiet.mjs'
import { appendFileSync, writeFileSync } from 'node:fs'
import WebSocket from 'ws'
import { lexicons } from '@atproto/api'
import { IdResolver, MemoryCache, getHandle } from '@atproto/identity'
import { decodeAll as cborDecodeAll, encode as cborEncode } from '@atproto/lex-cbor'
import {
  MST,
  MemoryBlockstore,
  cborToLexRecord,
  def,
  readCarWithRoot,
  verifyCommitSig,
  verifyProofs,
} from '@atproto/repo'
import { parseAccount, parseCommitAuthenticated, parseSync } from '@atproto/sync'
import { isValidNsid, isValidRecordKey, isValidTid } from '@atproto/syntax'
import { Frame } from '@atproto/xrpc-server'
import { errMessage } from './lib/common.mjs'

// The subscribeRepos lexicon as compiled into @atproto/sync: its Firehose class
// validates every message with `com.atproto.sync.subscribeRepos.$message`. The
// package does not export it, so it is loaded from next to its entry point.
const syncLexicons = await import(
  new URL('./lexicons/index.js', import.meta.resolve('@atproto/sync')).href
)
const SUBSCRIBE_REPOS = syncLexicons.com.atproto.sync.subscribeRepos
const NSID = 'com.atproto.sync.subscribeRepos'
const KNOWN_TYPES = ['#commit', '#sync', '#identity', '#account', '#info']
const ACCOUNT_STATUSES = ['takendown', 'suspended', 'deleted', 'deactivated', 'desynchronized', 'throttled']
const FUTURE_REV_TOLERANCE_MS = 5 * 60 * 1000 // as indigo's relay (futureRevTolerance)

// ---------------------------------------------------------------------------
// Arguments

function usage(msg) {
  process.stderr.write(
    `firehose-consumer: ${msg}\nusage: firehose-consumer.mjs --url ws://HOST:PORT --plc http://HOST:PORT ` +
      `[--cursor N] [--until-seq N] [--timeout-ms 30000] [--idle-ms N] [--allow-gaps] [--save-frames FILE]\n`,
  )
  process.exit(2)
}

function parseArgs(argv) {
  const opts = { timeoutMs: 30000, allowGaps: false }
  const int = (name, v, min) => {
    if (!/^-?\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
      usage(`${name} must be an integer >= ${min}, got ${v}`)
    }
    return Number(v)
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--url') opts.url = val()
    else if (a === '--plc') opts.plc = val()
    else if (a === '--cursor') opts.cursor = int(a, val(), 0)
    else if (a === '--until-seq') opts.untilSeq = int(a, val(), 0)
    else if (a === '--timeout-ms') opts.timeoutMs = int(a, val(), 1)
    else if (a === '--idle-ms') opts.idleMs = int(a, val(), 1)
    else if (a === '--allow-gaps') opts.allowGaps = true
    else if (a === '--save-frames') opts.saveFrames = val()
    else usage(`unknown argument ${a}`)
  }
  if (!opts.url) usage('--url is required')
  if (!opts.plc) usage('--plc is required')
  let url
  try {
    url = new URL(opts.url)
  } catch {
    usage(`--url is not a URL: ${opts.url}`)
  }
  if (url.protocol === 'http:') url.protocol = 'ws:'
  else if (url.protocol === 'https:') url.protocol = 'wss:'
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') usage(`--url must be ws(s):// or http(s)://`)
  url = new URL(`/xrpc/${NSID}`, url.origin.replace(/^http/, 'ws'))
  if (opts.cursor !== undefined) url.searchParams.set('cursor', String(opts.cursor))
  opts.endpoint = url.toString()
  try {
    opts.plc = new URL(opts.plc).origin
  } catch {
    usage(`--plc is not a URL: ${opts.plc}`)
  }
  return opts
}

const opts = parseArgs(process.argv.slice(2))

// ---------------------------------------------------------------------------
// Identity: the reference resolver, pointed at --plc, with plain fetch (its
// default SSRF-safe fetch refuses IP-literal / http URLs) and a cache that is
// bypassed after an #identity event or a signature failure.

const idResolver = new IdResolver({
  plcUrl: opts.plc,
  fetch: globalThis.fetch,
  timeout: 10000,
  didCache: new MemoryCache(),
})

// ---------------------------------------------------------------------------
// Helpers

const cidStr = (c) => (c == null ? null : c.toString())
const sameCid = (a, b) => a != null && b != null && a.toString() === b.toString()
const isCid = (c) => c != null && typeof c === 'object' && c.asCID === c
const compareStr = (a, b) => (a < b ? -1 : a > b ? 1 : 0)
let emptyTreeCid // CID of the empty MST (computed once)

function bytesEqual(a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const TID_CHARS = '234567abcdefghijklmnopqrstuvwxyz'
/** TID -> Unix time in ms (53-bit microsecond timestamp, 10-bit clock id). */
function tidTimeMs(tid) {
  let v = 0n
  for (const ch of tid) v = v * 32n + BigInt(TID_CHARS.indexOf(ch))
  return Number(v >> 10n) / 1000
}

/** The #atproto did:key of `did`'s document (reference resolver). */
async function signingKey(did, forceRefresh) {
  return idResolver.did.resolveAtprotoKey(did, forceRefresh)
}

/**
 * Verifies the commit signature with the DID document's #atproto key. Like
 * @atproto/sync's parseCommitAuthenticated, a failure with the cached key is
 * retried once with a freshly fetched document.
 */
async function checkSignature(did, commit, ev) {
  let key
  try {
    key = await signingKey(did, false)
  } catch (err) {
    ev.problem(`cannot resolve the #atproto key of ${did} from ${opts.plc}: ${errMessage(err)}`)
    return undefined
  }
  const verify = async (k) => {
    try {
      return await verifyCommitSig(commit, k)
    } catch {
      return false
    }
  }
  if (await verify(key)) return key
  let fresh
  try {
    fresh = await signingKey(did, true)
  } catch (err) {
    ev.problem(`commit signature does not verify with ${key}, and re-resolving ${did} failed: ${errMessage(err)}`)
    return undefined
  }
  if (fresh !== key && (await verify(fresh))) {
    ev.warn(`signing key of ${did} changed (${key} -> ${fresh}) without an #identity event first`)
    return fresh
  }
  ev.problem(`commit signature does not verify with the #atproto key ${fresh} of ${did}`)
  return undefined
}

/** Reads the CAR (hash of every block checked) and its v3 commit block. */
async function loadCarCommit(blocksBytes, expectRoot, ev) {
  let car
  try {
    car = await readCarWithRoot(blocksBytes)
  } catch (err) {
    ev.problem(`blocks is not a valid CAR: ${errMessage(err)}`)
    return undefined
  }
  if (expectRoot !== undefined && !sameCid(car.root, expectRoot)) {
    ev.problem(`CAR root ${car.root} != commit ${cidStr(expectRoot)}`)
  }
  const store = new MemoryBlockstore(car.blocks)
  let commit
  try {
    commit = await store.readObj(car.root, def.commit)
  } catch (err) {
    ev.problem(`CAR root block ${car.root} is not a v3 repo commit: ${errMessage(err)}`)
    return undefined
  }
  return { car, store, commit }
}

function checkRevTime(rev, ev) {
  if (!isValidTid(rev)) return
  const t = tidTimeMs(rev)
  if (t > Date.now() + FUTURE_REV_TOLERANCE_MS) {
    ev.problem(`rev ${rev} is in the future (${new Date(t).toISOString()})`)
  }
}

// ---------------------------------------------------------------------------
// Per-stream state

const repos = new Map() // did -> { rev, data: CID, commit: CID, active: boolean|undefined }
const repoState = (did) => {
  let st = repos.get(did)
  if (!st) repos.set(did, (st = {}))
  return st
}

let events = 0
let invalid = 0
let warningsTotal = 0
let lastSeq = null
const gaps = []
let sawOutdatedCursor = false

function checkSeq(seq, ev) {
  if (!Number.isSafeInteger(seq)) return
  if (lastSeq === null) {
    // first event: with a cursor, the replay must start right after it
    // (unless the server said #info OutdatedCursor)
    if (opts.cursor !== undefined) {
      if (seq <= opts.cursor) {
        ev.problem(`first seq ${seq} is not after the requested cursor ${opts.cursor}`)
      } else if (seq > opts.cursor + 1 && !sawOutdatedCursor) {
        gaps.push({ after: opts.cursor, next: seq, missing: seq - opts.cursor - 1 })
        ev.warn(`seq gap: the replay from cursor ${opts.cursor} starts at ${seq}`)
      }
    }
    lastSeq = seq
  } else if (seq <= lastSeq) {
    ev.problem(`seq ${seq} is not greater than the previous seq ${lastSeq}`)
  } else {
    if (seq > lastSeq + 1) {
      gaps.push({ after: lastSeq, next: seq, missing: seq - lastSeq - 1 })
      ev.warn(`seq gap: ${seq - lastSeq - 1} seq(s) missing between ${lastSeq} and ${seq}`)
    }
    lastSeq = seq
  }
}

// ---------------------------------------------------------------------------
// #commit

/** Shape rules of sync 1.1 repoOps (indigo ParseCommitOps): returns ok. */
function checkOps(ops, ev) {
  let ok = true
  const paths = new Set()
  for (const op of ops) {
    const where = `op ${op.action} ${op.path}`
    const slash = typeof op.path === 'string' ? op.path.indexOf('/') : -1
    const coll = slash > 0 ? op.path.slice(0, slash) : ''
    const rkey = slash > 0 ? op.path.slice(slash + 1) : ''
    if (slash <= 0 || !isValidNsid(coll) || !isValidRecordKey(rkey) || rkey.includes('/')) {
      ev.problem(`${where}: path is not <collection NSID>/<record key>`)
      ok = false
    }
    if (paths.has(op.path)) {
      ev.problem(`${where}: path appears more than once in ops`)
      ok = false
    }
    paths.add(op.path)
    const hasPrev = op.prev !== undefined && op.prev !== null
    if (op.prev === null) {
      ev.problem(`${where}: prev is null (must be absent or a CID)`)
      ok = false
    }
    if (op.action === 'create') {
      if (!isCid(op.cid)) (ok = false), ev.problem(`${where}: cid must be the new record's CID`)
      if (hasPrev) (ok = false), ev.problem(`${where}: a create must not carry prev`)
    } else if (op.action === 'update') {
      if (!isCid(op.cid)) (ok = false), ev.problem(`${where}: cid must be the new record's CID`)
      if (!hasPrev) (ok = false), ev.problem(`${where}: an update must carry prev (sync 1.1)`)
      else if (isCid(op.cid) && sameCid(op.cid, op.prev)) {
        // the reference PDS emits this for an identical applyWrites update
        // (it skips an identical putRecord); indigo's mst.InvertOp calls it an
        // invalid operation, which its relay only logs
        ev.warn(`${where}: cid == prev (no-op update)`)
      }
    } else if (op.action === 'delete') {
      if (op.cid !== null) (ok = false), ev.problem(`${where}: cid must be null for a delete`)
      if (!hasPrev) (ok = false), ev.problem(`${where}: a delete must carry prev (sync 1.1)`)
    } else {
      ok = false
      ev.problem(`op action ${JSON.stringify(op.action)} is not create/update/delete`)
    }
  }
  return ok
}

/**
 * Sync 1.1 inductive check: start from the MST at commit.data (only the CAR's
 * blocks are available) and undo every op; the resulting root must be
 * prevData. Needs every MST node on the ops' paths plus the neighbours that
 * an undo touches (the "covering proof"); a missing one is an error.
 */
async function invertOps(store, data, ops) {
  let mst = MST.load(store, data)
  const sorted = [...ops].sort((a, b) => compareStr(a.path, b.path))
  for (const op of sorted) {
    const cur = await mst.get(op.path)
    if (op.action === 'create' || op.action === 'update') {
      if (!sameCid(cur, op.cid)) {
        throw new Error(`${op.action} ${op.path}: the MST at commit.data holds ${cidStr(cur)}, op cid is ${cidStr(op.cid)}`)
      }
      mst = op.action === 'create' ? await mst.delete(op.path) : await mst.update(op.path, op.prev)
    } else {
      if (cur !== null) {
        throw new Error(`delete ${op.path}: the key is still in the MST at commit.data (${cidStr(cur)})`)
      }
      mst = await mst.add(op.path, op.prev)
    }
  }
  return mst.getPointer()
}

async function handleCommit(evt, ev) {
  const did = evt.repo
  ev.out.repo = did
  ev.out.rev = evt.rev
  ev.out.since = evt.since ?? null
  ev.out.commit = cidStr(evt.commit)
  ev.out.ops = Array.isArray(evt.ops)
    ? evt.ops.map((op) => ({ action: op.action, path: op.path, cid: cidStr(op.cid), prev: cidStr(op.prev) }))
    : []
  if (evt.tooBig !== false) ev.problem(`tooBig must be false (got ${evt.tooBig})`)
  if (evt.rebase !== false) ev.problem(`rebase must be false (got ${evt.rebase})`)
  if (Array.isArray(evt.blobs) && evt.blobs.length) ev.warn(`blobs is deprecated and should be [] (has ${evt.blobs.length})`)
  if (!Array.isArray(evt.ops) || typeof did !== 'string' || typeof evt.rev !== 'string') return
  if (evt.prevData === null) ev.problem('prevData is null (must be absent or a CID)')

  const st = repoState(did)
  if (st.active === false) ev.warn(`commit for an account whose last #account event said active=false`)
  // rev / since / prevData chain against what this stream said before
  checkRevTime(evt.rev, ev)
  if (st.rev !== undefined) {
    if (!(evt.rev > st.rev)) ev.problem(`rev ${evt.rev} is not newer than the repo's previous rev ${st.rev}`)
    if (evt.since !== st.rev) ev.problem(`since ${evt.since} != the repo's previous rev ${st.rev}`)
    if (isCid(evt.prevData) && st.data && !sameCid(evt.prevData, st.data)) {
      ev.problem(`prevData ${evt.prevData} != data ${st.data} of the repo's previous commit`)
    }
  } else if (typeof evt.since === 'string' && !(evt.rev > evt.since)) {
    ev.problem(`rev ${evt.rev} is not newer than since ${evt.since}`)
  }
  if (evt.prevData === undefined && evt.since !== null) {
    ev.problem('prevData is missing (required by sync 1.1 on every commit after the first)')
  }

  // later events of this repo are compared with this one (with its commit
  // block once that could be read), so one bad event is reported once
  Object.assign(st, { rev: evt.rev, data: undefined, commit: evt.commit })
  const loaded = await loadCarCommit(evt.blocks, evt.commit, ev)
  if (!loaded) return
  const { car, store, commit } = loaded
  if (commit.did !== did) ev.problem(`commit block did ${commit.did} != repo ${did}`)
  if (commit.rev !== evt.rev) ev.problem(`commit block rev ${commit.rev} != event rev ${evt.rev}`)
  Object.assign(st, { rev: commit.rev, data: commit.data, commit: car.root })

  const key = await checkSignature(did, commit, ev)

  const opsOk = checkOps(evt.ops, ev)
  // every create/update record block is in the slice (hash already checked
  // by readCarWithRoot) and is a Lex map
  for (const op of evt.ops) {
    if ((op.action === 'create' || op.action === 'update') && isCid(op.cid)) {
      const bytes = car.blocks.get(op.cid)
      if (!bytes) {
        ev.problem(`op ${op.action} ${op.path}: record block ${op.cid} is not in blocks`)
        continue
      }
      try {
        cborToLexRecord(bytes)
      } catch (err) {
        ev.problem(`op ${op.action} ${op.path}: record block is not a Lex map: ${errMessage(err)}`)
      }
    }
  }
  if (!opsOk) return

  // forward proof of every op against commit.data (@atproto/repo verifyProofs,
  // what @atproto/sync's parseCommitAuthenticated uses)
  if (key && evt.ops.length) {
    const claims = evt.ops.map((op) => {
      const slash = op.path.indexOf('/')
      return { collection: op.path.slice(0, slash), rkey: op.path.slice(slash + 1), cid: op.action === 'delete' ? null : op.cid }
    })
    try {
      const res = await verifyProofs(evt.blocks, claims, did, key)
      for (const c of res.unverified) {
        ev.problem(`op ${c.collection}/${c.rkey}: verifyProofs: the MST at commit.data does not ${c.cid ? `map it to ${c.cid}` : 'lack it'}`)
      }
    } catch (err) {
      ev.problem(`verifyProofs: ${errMessage(err)}`)
    }
  }

  // sync 1.1 inversion
  let target = evt.prevData
  if (target === undefined && evt.since === null) {
    emptyTreeCid ??= await (await MST.create(new MemoryBlockstore())).getPointer()
    target = emptyTreeCid // genesis commit: undoing its ops must give the empty tree
  }
  if (isCid(target)) {
    try {
      const got = await invertOps(store, commit.data, evt.ops)
      if (!sameCid(got, target)) {
        ev.problem(
          `inverting the ops on the MST at commit.data gives ${got}, not ${evt.prevData === undefined ? `the empty tree ${target} (genesis commit without prevData)` : `prevData ${target}`}`,
        )
      }
    } catch (err) {
      const missing = /block not found/i.test(err.message)
      ev.problem(`${missing ? 'blocks lacks an MST node needed to invert the ops (covering proof): ' : 'cannot invert the ops: '}${errMessage(err)}`)
    }
  }

  // the covering proof of every op path in the new tree (what the reference
  // PDS puts in the slice: @atproto/repo Repo.formatCommit's relevantBlocks =
  // MST.getCoveringProof of each written key). @atproto/repo's own inversion
  // above may need less; other implementations (indigo's, in the Go relay)
  // can need any of it, so a slice must hold at least this much.
  if (evt.ops.length) {
    const tree = MST.load(store, commit.data)
    for (const op of evt.ops) {
      try {
        await tree.getCoveringProof(op.path)
      } catch (err) {
        ev.problem(`blocks lacks part of the covering proof of ${op.path}: ${errMessage(err)}`)
        break
      }
    }
  }

  // the official consumer path: every op must come out of it
  if (key && evt.ops.length) {
    try {
      const parsed = await parseCommitAuthenticated(idResolver, evt)
      if (parsed.length !== evt.ops.length) {
        ev.problem(`@atproto/sync parseCommitAuthenticated accepted ${parsed.length} of ${evt.ops.length} ops`)
      }
    } catch (err) {
      ev.problem(`@atproto/sync parseCommitAuthenticated: ${errMessage(err)}`)
    }
  }
}

// ---------------------------------------------------------------------------
// #sync, #identity, #account

async function handleSync(evt, ev) {
  const did = evt.did
  ev.out.repo = did
  ev.out.rev = evt.rev
  if (typeof did !== 'string' || typeof evt.rev !== 'string') return
  if (!isValidTid(evt.rev)) ev.problem(`rev ${JSON.stringify(evt.rev)} is not a TID`)
  checkRevTime(evt.rev, ev)
  try {
    const parsed = await parseSync(evt) // official: CAR with a single root
    ev.out.commit = cidStr(parsed.cid)
  } catch (err) {
    ev.problem(`@atproto/sync parseSync: ${errMessage(err)}`)
  }
  const st = repoState(did)
  const before = { ...st }
  Object.assign(st, { rev: evt.rev, data: undefined, commit: undefined })
  const loaded = await loadCarCommit(evt.blocks, undefined, ev)
  if (!loaded) return
  const { car, commit } = loaded
  ev.out.commit = cidStr(car.root)
  if (car.blocks.size !== 1) ev.warn(`blocks holds ${car.blocks.size} blocks; a #sync needs only the commit block`)
  if (commit.did !== did) ev.problem(`commit block did ${commit.did} != did ${did}`)
  if (commit.rev !== evt.rev) ev.problem(`commit block rev ${commit.rev} != event rev ${evt.rev}`)
  await checkSignature(did, commit, ev)
  // a #sync may repeat the current rev (the reference PDS sends one right
  // after the genesis #commit, with the same commit) but must not go back
  if (before.rev !== undefined) {
    if (commit.rev < before.rev) ev.problem(`rev ${commit.rev} is older than the repo's previous rev ${before.rev}`)
    else if (commit.rev === before.rev && before.commit && !sameCid(before.commit, car.root)) {
      ev.problem(`rev ${commit.rev} equals the previous rev but names another commit (${car.root}, was ${before.commit})`)
    }
  }
  Object.assign(st, { rev: commit.rev, data: commit.data, commit: car.root })
}

async function handleIdentity(evt, ev) {
  const did = evt.did
  ev.out.repo = did
  if (evt.handle !== undefined) ev.out.handle = evt.handle
  if (typeof did !== 'string') return
  // like a relay: purge the cached identity, then look again
  let doc
  try {
    doc = await idResolver.did.resolve(did, true)
  } catch (err) {
    ev.warn(`re-resolving ${did} after #identity failed: ${errMessage(err)}`)
    return
  }
  if (!doc) {
    ev.warn(`${did} does not resolve at ${opts.plc} (tombstoned?)`)
    return
  }
  const docHandle = getHandle(doc)
  if (typeof evt.handle === 'string' && evt.handle !== 'handle.invalid' && docHandle !== evt.handle) {
    ev.warn(`handle ${evt.handle} differs from the DID document's at:// alias ${docHandle}`)
  }
}

function handleAccount(evt, ev) {
  const did = evt.did
  ev.out.repo = did
  ev.out.active = evt.active
  if (evt.status !== undefined) ev.out.status = evt.status
  if (typeof did !== 'string' || typeof evt.active !== 'boolean') return
  if (evt.active && evt.status !== undefined) ev.problem(`active=true must not carry a status (got ${evt.status})`)
  if (!evt.active && evt.status === undefined) ev.warn('active=false without a status')
  if (evt.status !== undefined && !ACCOUNT_STATUSES.includes(evt.status)) {
    ev.warn(`status ${JSON.stringify(evt.status)} is not one of the lexicon's known values`)
  }
  if (parseAccount(evt) === undefined) {
    ev.warn(`@atproto/sync parseAccount drops this event (status ${evt.status})`)
  }
  repoState(did).active = evt.active
}

// ---------------------------------------------------------------------------
// Frames

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

class EventReport {
  constructor() {
    this.out = {}
    this.problems = []
    this.warnings = []
  }
  problem(msg) {
    this.problems.push(msg)
  }
  warn(msg) {
    this.warnings.push(msg)
  }
  finish() {
    events++
    const line = { ...this.out, ok: this.problems.length === 0 }
    if (!line.ok) {
      invalid++
      line.error = this.problems.join('; ')
      process.stderr.write(`firehose-consumer: seq ${line.seq ?? '-'} ${line.type ?? ''}: ${line.error}\n`)
    }
    if (this.warnings.length) {
      warningsTotal += this.warnings.length
      line.warnings = this.warnings
    }
    emit(line)
    return line
  }
}

async function handleFrame(bytes) {
  const ev = new EventReport()
  ev.out.seq = null
  ev.out.type = null
  // 1. exactly two DAG-CBOR items, canonically encoded
  let items
  try {
    items = [...cborDecodeAll(bytes)]
  } catch (err) {
    ev.problem(`frame is not DAG-CBOR: ${errMessage(err)}`)
    return ev.finish()
  }
  const [header, body] = items
  if (items.length === 2) {
    try {
      const again = Buffer.concat([cborEncode(header), cborEncode(body)])
      if (!bytesEqual(again, bytes)) ev.problem('frame is not canonical DAG-CBOR (re-encoding header+body gives other bytes)')
    } catch (err) {
      ev.problem(`frame holds values outside the atproto data model: ${errMessage(err)}`)
    }
  }
  // 2. the reference frame parser
  let frame
  try {
    frame = Frame.fromBytes(bytes)
  } catch (err) {
    ev.problem(`@atproto/xrpc-server Frame.fromBytes: ${errMessage(err)}`)
    return ev.finish()
  }
  const extraHeader = Object.keys(header).filter((k) => k !== 'op' && k !== 't')
  if (extraHeader.length) ev.warn(`frame header has unexpected keys ${extraHeader.join(',')}`)
  if (frame.isError()) {
    ev.out.type = 'error'
    ev.out.name = frame.code
    if (frame.message !== undefined) ev.out.message = frame.message
    if ('t' in header) ev.warn('error frame header carries t')
    ev.problem(`error frame: ${frame.code}${frame.message ? `: ${frame.message}` : ''}`)
    return ev.finish()
  }
  let t = frame.type
  if (typeof t !== 'string') {
    ev.problem('message frame header lacks t')
    return ev.finish()
  }
  if (t.startsWith(`${NSID}#`)) {
    ev.warn(`header t is the long form ${t} (short "#..." expected)`)
    t = t.slice(NSID.length)
  }
  ev.out.type = t
  const evt = frame.body
  if (evt !== null && typeof evt === 'object' && Number.isSafeInteger(evt.seq)) ev.out.seq = evt.seq
  if (evt !== null && typeof evt === 'object' && typeof evt.time === 'string') ev.out.time = evt.time
  if (!KNOWN_TYPES.includes(t)) {
    ev.problem(`unknown or deprecated message type ${t} (sync 1.1 has ${KNOWN_TYPES.join(' ')})`)
    if (Number.isSafeInteger(evt?.seq)) checkSeq(evt.seq, ev)
    return ev.finish()
  }
  // 3. lexicon: the validator of @atproto/sync's Firehose, and @atproto/api's
  const typed = { ...evt, $type: `${NSID}${t}` }
  const res = SUBSCRIBE_REPOS.$message.safeParse(typed)
  if (!res.success) ev.problem(`lexicon (@atproto/sync): ${res.reason?.message ?? res.reason}`)
  try {
    lexicons.assertValidXrpcMessage(NSID, typed)
  } catch (err) {
    ev.problem(`lexicon (@atproto/api): ${errMessage(err)}`)
  }
  if (t === '#info') {
    ev.out.name = evt.name
    if (evt.message !== undefined) ev.out.message = evt.message
    if (evt.name === 'OutdatedCursor') sawOutdatedCursor = true
    process.stderr.write(`firehose-consumer: #info ${JSON.stringify(evt)}\n`)
    return ev.finish()
  }
  checkSeq(evt.seq, ev)
  try {
    if (t === '#commit') await handleCommit(evt, ev)
    else if (t === '#sync') await handleSync(evt, ev)
    else if (t === '#identity') await handleIdentity(evt, ev)
    else if (t === '#account') handleAccount(evt, ev)
  } catch (err) {
    ev.problem(`validator error: ${errMessage(err)}`)
  }
  return ev.finish()
}

// ---------------------------------------------------------------------------
// Connection and termination

if (opts.saveFrames) writeFileSync(opts.saveFrames, '')
const connectionErrors = []
let endReason = null
let stopped = false
let chain = Promise.resolve()
let idleTimer

const ws = new WebSocket(opts.endpoint, { maxPayload: 16 * 1024 * 1024 })

function stop(reason) {
  if (stopped) return
  stopped = true
  endReason = reason
  clearTimeout(timeoutTimer)
  clearTimeout(idleTimer)
  try {
    ws.terminate()
  } catch {}
  chain.then(summary)
}

const untilReached = () => opts.untilSeq !== undefined && lastSeq !== null && lastSeq >= opts.untilSeq

function armIdle() {
  if (opts.idleMs === undefined) return
  clearTimeout(idleTimer)
  idleTimer = setTimeout(() => stop('idle'), opts.idleMs)
}

const timeoutTimer = setTimeout(() => stop('timeout'), opts.timeoutMs)
armIdle()

ws.on('message', (data, isBinary) => {
  if (stopped) return
  armIdle()
  const bytes = new Uint8Array(Buffer.isBuffer(data) ? data : Buffer.concat([].concat(data)))
  if (opts.saveFrames) {
    appendFileSync(opts.saveFrames, JSON.stringify({ frame: Buffer.from(bytes).toString('base64') }) + '\n')
  }
  chain = chain.then(async () => {
    if (untilReached()) return
    if (!isBinary) {
      const ev = new EventReport()
      ev.out.seq = null
      ev.out.type = null
      ev.problem('text WebSocket frame (frames must be binary)')
      ev.finish()
      return
    }
    await handleFrame(bytes)
    if (untilReached()) stop('until-seq')
  })
})
ws.on('open', () => {
  // for live use: start writing only after this line (startup takes ~1 s)
  process.stderr.write(`firehose-consumer: connected to ${opts.endpoint}\n`)
})
ws.on('unexpected-response', (_req, res) => {
  let body = ''
  res.on('data', (c) => (body += c))
  res.on('end', () => {
    connectionErrors.push(`HTTP ${res.statusCode} on the WebSocket upgrade: ${body.slice(0, 300)}`)
    stop('error')
  })
})
ws.on('error', (err) => {
  connectionErrors.push(`WebSocket error: ${errMessage(err)}${err.code ? ` (${err.code})` : ''}`)
  stop('error')
})
ws.on('close', (code, reason) => {
  if (!stopped) {
    process.stderr.write(`firehose-consumer: socket closed (${code}${reason?.length ? ` ${reason}` : ''})\n`)
    endReason = 'closed'
    // process what was already received, then finish
    stopped = true
    clearTimeout(timeoutTimer)
    clearTimeout(idleTimer)
    chain.then(summary)
  }
})

function summary() {
  const untilMissed = opts.untilSeq !== undefined && (lastSeq === null || lastSeq < opts.untilSeq)
  const failedCount =
    invalid + (opts.allowGaps ? 0 : gaps.length) + (untilMissed ? 1 : 0) + connectionErrors.length
  const line = {
    summary: true,
    events,
    invalid,
    gaps,
    lastSeq,
    end: endReason,
    warnings: warningsTotal,
  }
  if (untilMissed) line.error = `--until-seq ${opts.untilSeq} not reached (last seq ${lastSeq})`
  if (connectionErrors.length) line.connectionErrors = connectionErrors
  emit(line)
  if (line.error) process.stderr.write(`firehose-consumer: ${line.error}\n`)
  for (const e of connectionErrors) process.stderr.write(`firehose-consumer: ${e}\n`)
  process.stdout.write(`${events - invalid} passed, ${failedCount} failed\n`)
  process.exitCode = failedCount === 0 ? 0 : 1
  // let stdout drain, then leave (the resolver may hold keep-alive sockets)
  setImmediate(() => process.exit(process.exitCode))
}
