#!/usr/bin/env node
// Drives atbox's LAN setup page in a real browser (Debian's chromium through
// playwright-core), as a phone on the LAN would:
//
//   node tests/interop/setup-browser.mjs --url http://127.0.0.1:PORT/ --code 123456 \
//        --hostname pds.test --handle owner --screenshots DIR
//
// 1. a wrong pairing code is refused with a message; 2. the right code with a public
// name, handle, email and password claims the box (the box restarts under that name
// and finishes the claim while the page waits), and the page tells how to log in from
// the Bluesky app; 3. a reload no longer offers claiming; 4. the reachability checks
// (atbox doctor) run from the page; 5. the owner logs in on the page, sees the
// accounts, makes an invite code and asks the relays to crawl; 6. with --own-domain,
// takes that domain as the handle once its TXT record exists. Saves a screenshot of each step
// in DIR and prints one JSON line: {"ok":true,...} or {"ok":false,"error":...}.
import './lib/quiet.mjs'
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

const url = arg('url')
const code = arg('code')
const handle = arg('handle')
const hostname = arg('hostname')
// Optional: a domain the owner takes as their handle, and the management API of the
// test's DNS server, where "the owner" adds the TXT record the page tells them to.
const ownDomain = optional('own-domain')
const dnsApi = optional('dns-api')
const dir = arg('screenshots')
const wrong = code === '000000' ? '111111' : '000000'

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
const result = { ok: false }
try {
  // A phone-sized screen.
  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 })
  await page.goto(url)
  await page.waitForSelector('#claim:not([hidden])')
  await page.screenshot({ path: `${dir}/1-unclaimed.png`, fullPage: true })

  await page.fill('#code', wrong)
  await page.fill('#hostname', hostname)
  await page.fill('#handle', handle)
  await page.fill('#email', 'owner@example.com')
  await page.fill('#password', 'a long enough password')
  await page.click('#claim-button')
  await page.waitForSelector('#claim-error:not([hidden])')
  result.wrongCodeMessage = await page.textContent('#claim-error')
  await page.screenshot({ path: `${dir}/2-wrong-code.png`, fullPage: true })

  await page.fill('#code', code)
  await page.click('#claim-button')
  await page.waitForSelector('#finishing:not([hidden]), #done:not([hidden])', { timeout: 30000 })
  result.finishing = await page.isVisible('#finishing') ? await page.textContent('#finishing-message') : null
  if (result.finishing) await page.screenshot({ path: `${dir}/3-restarting.png`, fullPage: true })
  await page.waitForSelector('#done:not([hidden])', { timeout: 30000 })
  result.doneMessage = await page.textContent('#done-message')
  result.loginServer = await page.textContent('#login-server')
  await page.screenshot({ path: `${dir}/4-claimed.png`, fullPage: true })

  await page.reload()
  await page.waitForSelector('#status:not([hidden])')
  await page.waitForTimeout(500)
  result.claimOfferedAfterReload = await page.isVisible('#claim')
  await page.click('#check-button')
  await page.waitForSelector('#findings li[class^="finding-"]', { timeout: 60000 })
  result.findings = await page.$$eval('#findings li', (items) => items.map((li) => li.textContent))
  await page.screenshot({ path: `${dir}/5-checks.png`, fullPage: true })

  await page.fill('#owner-password', 'wrong password')
  await page.click('#owner-login-button')
  await page.waitForSelector('#owner-error:not([hidden])')
  result.ownerWrongPassword = await page.textContent('#owner-error')
  await page.fill('#owner-password', 'a long enough password')
  await page.click('#owner-login-button')
  await page.waitForSelector('#owner-actions:not([hidden])', { timeout: 30000 })
  result.accounts = await page.$$eval('#accounts li', (items) => items.map((li) => li.textContent))
  await page.click('#invite-button')
  await page.waitForSelector('#invite:not([hidden])')
  result.inviteCode = await page.textContent('#invite-code')
  await page.click('#crawl-button')
  await page.waitForSelector('#crawl-results li')
  result.crawl = await page.$$eval('#crawl-results li', (items) => items.map((li) => li.textContent))
  result.codes = await page.$$eval('#codes li', (items) => items.map((li) => li.textContent))
  // A community's services in one click: the preset fills the DID/URL pair and relays.
  await page.check('input[name=preset][value=BlackSky]')
  result.blacksky = [await page.inputValue('#appview-url'), await page.inputValue('#appview-did'), await page.inputValue('#relays')]
  await page.screenshot({ path: `${dir}/6-owner.png`, fullPage: true })

  if (ownDomain) {
    await page.fill('#domain', ownDomain)
    await page.click('#domain-button')
    await page.waitForSelector('#domain-error:not([hidden])', { timeout: 30000 })
    result.domainBeforeRecord = await page.textContent('#domain-error')
    const name = await page.textContent('#domain-record-name')
    const value = await page.textContent('#domain-record-value')
    result.domainRecord = [name, value]
    const set = await fetch(`${dnsApi}/set-txt`, {
      method: 'POST', body: JSON.stringify({ host: `${name}.`, value }),
    })
    if (!set.ok) throw new Error(`DNS stand-in: ${set.status}`)
    await page.click('#domain-button')
    await page.waitForSelector('#domain-ok:not([hidden])', { timeout: 30000 })
    result.domainOk = await page.textContent('#domain-ok')
    await page.screenshot({ path: `${dir}/7-own-domain.png`, fullPage: true })
  }
  // Last (atbox restarts under it): save the chosen services.
  await page.click('#services-button')
  await page.waitForSelector('#services-ok:not([hidden])', { timeout: 30000 })
  result.servicesSaved = await page.textContent('#services-ok')
  result.ok = true
} catch (e) {
  result.error = String(e && e.stack || e)
} finally {
  await browser.close()
}
console.log(JSON.stringify(result))
