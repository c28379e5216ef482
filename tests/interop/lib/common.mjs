import { readFileSync } from 'node:fs'
import { isLexMap } from '@atproto/lex-data'
import { jsonToLex, lexToJson } from '@atproto/lex-json'

/** Reads all of stdin and parses it as (plain) JSON. */
export function readStdinJson() {
  const text = readFileSync(0, 'utf8')
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new Error(`stdin is not valid JSON: ${err.message}`)
  }
}

/**
 * atproto JSON data model -> in-memory Lex/IPLD value, with the reference
 * converter: {"$link": cid} -> CID, {"$bytes": base64} -> Uint8Array,
 * {"$type":"blob",...} -> BlobRef. Strict mode: floats, malformed
 * $link/$bytes/blob objects and invalid $type values are rejected instead of
 * being passed through (they are not valid atproto data anyway).
 */
export function recordFromJson(json) {
  const value = jsonToLex(json, { strict: true })
  if (!isLexMap(value)) {
    throw new Error('a record must be a JSON object (map)')
  }
  return value
}

/** In-memory Lex value -> atproto JSON data model ($link / $bytes form). */
export function recordToJson(value) {
  return lexToJson(value)
}

/** Byte-wise (code unit) comparison of MST keys / "collection/rkey" strings. */
export function compareKeys(a, b) {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Prints exactly one JSON line on stdout. */
export function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

/** Error -> one-line message (includes the cause, if any). */
export function errMessage(err) {
  if (!(err instanceof Error)) return String(err)
  let msg = `${err.name && err.name !== 'Error' ? err.name + ': ' : ''}${err.message}`
  if (err.cause) msg += ` (cause: ${errMessage(err.cause)})`
  return msg
}
