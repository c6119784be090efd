import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { startBerth, startUpstream, registryError } from '../helper.js'

test('an absolute-form request target is refused with 400 and never reaches the upstream', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], {}, { plain: true })
  const raw = await new Promise<string>((resolve, reject) => {
    const s = net.connect(berth.port, '127.0.0.1', () => s.write(`GET http://127.0.0.1:${up.port}/v2/ HTTP/1.1\r\nHost: x\r\n\r\n`))
    let out = ''
    s.on('data', (c) => { out += c.toString() })
    s.on('end', () => resolve(out))
    s.on('error', reject)
  })
  assert.match(raw, /^HTTP\/1\.1 400 /)
  assert.match(raw, /docker-distribution-api-version: registry\/2\.0/i)
  assert.equal(registryError(Buffer.from(raw.slice(raw.indexOf('\r\n\r\n') + 4))).code, 'UNSUPPORTED')
  assert.equal(up.seen.length, 0)
})
