// The TLS policy as an outside scanner sees it: testssl.sh (Debian package testssl.sh) against berth.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startBerth, startUpstream, tempDir } from '../helper.js'

interface Finding { id: string, finding: string }

test('testssl.sh: only TLS 1.2 and 1.3, only ECDHE with AEAD ciphers, no client-initiated renegotiation', { timeout: 180_000 }, async (t) => {
  const bin = ['testssl', 'testssl.sh'].find((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0)
  assert.ok(bin, 'testssl.sh is missing: apt-get install -y testssl.sh (.ci/run does this)')
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const json = join(tempDir(t), 'scan.json')
  const scan = spawn(bin, ['--quiet', '--color', '0', '--warnings', 'off', '--jsonfile-pretty', json, '-p', '-s', '-f', '-R', '--ip', '127.0.0.1', `https://localhost:${berth.port}`], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  scan.stdout.on('data', (d) => { out += d })
  scan.stderr.on('data', (d) => { out += d })
  await new Promise((resolve) => scan.on('exit', resolve))
  const result = (JSON.parse(readFileSync(json, 'utf8')) as { scanResult: Array<Record<string, unknown>> }).scanResult[0]
  const findings = new Map<string, string>()
  for (const v of Object.values(result)) if (Array.isArray(v)) for (const f of v as Finding[]) findings.set(f.id, f.finding)
  const expect = (id: string, re: RegExp) => assert.match(findings.get(id) ?? `(missing) ${out.slice(-400)}`, re, id)
  for (const id of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) expect(id, /^not offered/)
  expect('TLS1_2', /^offered/)
  expect('TLS1_3', /^offered/)
  for (const id of ['cipherlist_NULL', 'cipherlist_aNULL', 'cipherlist_EXPORT', 'cipherlist_LOW', 'cipherlist_3DES_IDEA', 'cipherlist_AVERAGE']) expect(id, /^not offered/)
  expect('cipherlist_STRONG', /^offered/)
  const ciphers = (findings.get('PFS_ciphers') ?? '').split(/\s+/).filter(Boolean)
  assert.ok(ciphers.length > 0)
  for (const c of ciphers) assert.match(c, /^(TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)|ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305))$/, c)
  expect('secure_client_renego', /^not vulnerable/)
})
