#!/usr/bin/env node
// A browser app signs in to atbox with the official @atproto/oauth-client-browser:
// lib/browser-oauth-app.js, bundled here with esbuild and served on 127.0.0.1, runs
// in Debian's chromium (through playwright-core); it talks to the PDS cross-origin
// (CORS, DPoP headers, DPoP-Nonce exposed), the person signs in and allows on
// atbox's pages, and the app uses the session (getSession, createRecord, a forced
// refresh, listRecords, signOut).
//
//   node tests/interop/oauth-browser.mjs --pds URL --plc URL --handle H --password P
//
// Prints one JSON line: {"ok":true,...} or {"ok":false,"error":...}.
import './lib/quiet.mjs'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { chromium } from 'playwright-core'

function arg(name) {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`)
  return process.argv[i + 1]
}

const config = { pds: arg('pds').replace(/\/$/, ''), plc: arg('plc'), handle: arg('handle') }
const password = arg('password')

const bundle = await build({
  entryPoints: [fileURLToPath(new URL('./lib/browser-oauth-app.js', import.meta.url))],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  write: false,
  logLevel: 'silent',
  define: { 'process.env.NODE_ENV': '"production"' },
})
const app = bundle.outputFiles[0].text
const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://127.0.0.1').pathname
  if (path === '/app.js') return res.writeHead(200, { 'content-type': 'text/javascript' }).end(app)
  if (path === '/config.json') return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(config))
  res.writeHead(200, { 'content-type': 'text/html' })
    .end('<!doctype html><meta charset="utf-8"><title>app</title><body><script type="module" src="/app.js"></script></body>')
})
await new Promise((r) => server.listen(0, '127.0.0.1', r))
const origin = `http://127.0.0.1:${server.address().port}`

const result = { ok: false }
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } })
  const browserErrors = []
  page.on('pageerror', (e) => browserErrors.push(String(e)))
  await page.goto(`${origin}/`)
  // The app sends the browser to the PDS's sign-in page.
  await page.waitForURL((u) => u.href.startsWith(`${config.pds}/oauth/authorize`), { timeout: 20000 })
    .catch(async () => { throw new Error(`no redirect to the PDS: ${JSON.stringify(await page.evaluate(() => window.__result))} ${browserErrors}`) })
  await page.fill('#password', password)
  await page.click('#sign-in-button')
  await page.waitForSelector('#allow')
  await page.click('#allow')
  await page.waitForFunction(() => window.__result, null, { timeout: 20000 })
  const out = await page.evaluate(() => window.__result)
  Object.assign(result, out)
  if (browserErrors.length) result.browserErrors = browserErrors
} catch (e) {
  result.ok = false
  result.error = String(e?.stack || e)
} finally {
  await browser.close()
  server.close()
}
console.log(JSON.stringify(result))
process.exit(result.ok ? 0 : 1)
