#!/usr/bin/env node
// Signs in to atbox with OAuth the way a real app and a real person do: the official
// @atproto/oauth-client-node as a loopback development client, Debian's chromium
// (through playwright-core) filling in atbox's sign-in and consent pages, then the
// session used through @atproto/api's Agent (a proxied app.bsky call included).
//
//   node tests/interop/oauth-flow.mjs --pds URL --plc URL --handle H --password P
//        [--screenshots DIR] [--confidential DIR]
//
// With --confidential (DIR holds cert.pem and key.pem for client.example, whose name
// the PDS resolves to 127.0.0.1), the app is a confidential web client instead: its
// client metadata and JWKS served over HTTPS at https://client.example:PORT, and it
// authenticates with private_key_jwt (an ES256 key made here).
//
// Prints one JSON line: {"ok":true,...} or {"ok":false,"error":...}.
import './lib/quiet.mjs'
import http from 'node:http'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import { JoseKey, NodeOAuthClient } from '@atproto/oauth-client-node'
import { Agent } from '@atproto/api'
import { chromium } from 'playwright-core'

function arg(name) {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`)
  return process.argv[i + 1]
}
function optional(name) {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? null : process.argv[i + 1]
}
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`)
}

const pds = arg('pds').replace(/\/$/, '')
const plc = arg('plc')
const handle = arg('handle')
const password = arg('password')
const shots = optional('screenshots')

const confidential = optional('confidential')
const scope = 'atproto transition:generic'
const memory = () => {
  const m = new Map()
  return { get: async (k) => m.get(k), set: async (k, v) => { m.set(k, v) }, del: async (k) => { m.delete(k) } }
}

// The app's own server: the redirect target (handing the query to the flow) and, for
// a confidential client, its metadata and keys.
let deliver
const callbackParams = new Promise((resolve) => { deliver = resolve })
const served = { metadata: 0, jwks: 0 }
let documents = {}
const handler = (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1')
  if (documents[url.pathname]) {
    served[url.pathname === '/jwks.json' ? 'jwks' : 'metadata'] += 1
    return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(documents[url.pathname]))
  }
  res.writeHead(200, { 'content-type': 'text/plain' }).end('signed in, you may close this page')
  if (url.pathname === '/callback') deliver(url.searchParams)
}
const server = confidential
  ? https.createServer({ cert: readFileSync(`${confidential}/cert.pem`), key: readFileSync(`${confidential}/key.pem`) }, handler)
  : http.createServer(handler)
await new Promise((r) => server.listen(0, '127.0.0.1', r))
const port = server.address().port

let clientMetadata, keyset
if (confidential) {
  const origin = `https://client.example:${port}`
  const key = await JoseKey.generate(['ES256'], 'app-key-1')
  keyset = [key]
  clientMetadata = {
    client_id: `${origin}/client-metadata.json`,
    client_name: 'Confidential test app',
    client_uri: origin,
    redirect_uris: [`${origin}/callback`],
    scope,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks_uri: `${origin}/jwks.json`,
    application_type: 'web',
    dpop_bound_access_tokens: true,
  }
  documents = { '/client-metadata.json': clientMetadata, '/jwks.json': { keys: [key.publicJwk] } }
} else {
  const redirectUri = `http://127.0.0.1:${port}/callback`
  clientMetadata = {
    client_id: `http://localhost?redirect_uri=${encodeURIComponent(redirectUri)}&scope=${encodeURIComponent(scope)}`,
    redirect_uris: [redirectUri],
    scope,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    dpop_bound_access_tokens: true,
  }
}
const client = new NodeOAuthClient({
  clientMetadata,
  keyset,
  stateStore: memory(),
  sessionStore: memory(),
  handleResolver: pds,
  plcDirectoryUrl: plc,
  allowHttp: true,
})

const result = { ok: false }
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // The confidential app's name is this machine, with a certificate of the test's CA.
    ...(confidential ? ['--host-resolver-rules=MAP client.example 127.0.0.1', '--ignore-certificate-errors'] : [])],
})
try {
  const url = await client.authorize(handle, { state: 'app-state-1' })
  check(url.href.startsWith(`${pds}/oauth/authorize?`), `authorize URL ${url.href}`)
  check(url.searchParams.get('request_uri')?.startsWith('urn:ietf:params:oauth:request_uri:'), 'a pushed request_uri')

  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, ignoreHTTPSErrors: !!confidential })
  await page.goto(url.href)
  check((await page.inputValue('#identifier')) === handle, 'the login_hint fills in the handle')
  if (shots) await page.screenshot({ path: `${shots}/oauth-1-sign-in.png`, fullPage: true })
  await page.fill('#password', 'not the password')
  await page.click('#sign-in-button')
  await page.waitForSelector('#error')
  result.wrongPassword = (await page.textContent('#error')).trim()
  await page.fill('#password', password)
  await page.click('#sign-in-button')
  await page.waitForSelector('#allow')
  result.appName = (await page.textContent('h1')).trim()
  result.consent = (await page.$$eval('ul.perms li', (li) => li.map((x) => x.textContent)))
  if (shots) await page.screenshot({ path: `${shots}/oauth-2-consent.png`, fullPage: true })
  await page.click('#allow')
  const params = await callbackParams
  check(params.get('iss') === pds, `iss ${params.get('iss')}`)

  const { session, state } = await client.callback(params)
  check(state === 'app-state-1', 'the app state comes back')
  result.sub = session.did
  const agent = new Agent(session)
  const me = await agent.com.atproto.server.getSession()
  check(me.data.did === session.did && me.data.handle === handle, 'getSession names the account')
  check(me.data.email === undefined, 'no email without transition:email')
  const post = await agent.com.atproto.repo.createRecord({
    repo: session.did,
    collection: 'app.bsky.feed.post',
    record: { $type: 'app.bsky.feed.post', text: 'posted through OAuth', createdAt: new Date().toISOString() },
  })
  check(post.data.uri.startsWith(`at://${session.did}/app.bsky.feed.post/`), 'createRecord')
  const blob = await agent.com.atproto.repo.uploadBlob(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]), { encoding: 'image/png' })
  check(blob.data.blob.size === 7, 'uploadBlob')
  const prefs = await agent.app.bsky.actor.getPreferences()
  check(Array.isArray(prefs.data.preferences), 'getPreferences')
  // Proxied to the AppView (with the account's service auth, made by atbox).
  const profile = await agent.app.bsky.actor.getProfile({ actor: session.did })
  check(profile.data.did === session.did, `proxied getProfile ${JSON.stringify(profile.data)}`)

  // A forced refresh: a new access token, and the new one works.
  const before = await session.getTokenInfo(false)
  const after = await session.getTokenInfo(true)
  check(after.expiresAt > before.expiresAt || after.expiresAt?.getTime() >= before.expiresAt?.getTime(), 'refresh gives a fresh token')
  const again = await agent.com.atproto.repo.listRecords({ repo: session.did, collection: 'app.bsky.feed.post' })
  check(again.data.records.length === 1, 'calls work after the refresh')

  // The app signs out: the grant is revoked, and restoring the session fails.
  await session.signOut()
  let restored = true
  try { await client.restore(session.did) } catch { restored = false }
  check(!restored, 'a signed-out session cannot be restored')
  result.served = served
  result.ok = true
} catch (e) {
  result.error = String(e?.stack || e)
} finally {
  await browser.close()
  server.close()
}
console.log(JSON.stringify(result))
process.exit(result.ok ? 0 : 1)
