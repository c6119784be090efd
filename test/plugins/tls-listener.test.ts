import { test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'
import { startBerth, startUpstream, testCerts } from '../helper.js'
import { serverTlsOptions } from '../../src/tls.js'
import { parseConfig } from '../../src/config/load.js'

async function handshake (port: number, ca: Buffer, opts: tls.ConnectionOptions): Promise<{ ok: boolean, protocol?: string | null, cipher?: string, error?: string, socket?: tls.TLSSocket }> {
  return await new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...opts }, () => {
      resolve({ ok: true, protocol: socket.getProtocol(), cipher: socket.getCipher().name, socket })
    })
    socket.on('error', (err) => resolve({ ok: false, error: err.message }))
  })
}

/** A control server that accepts everything old, to prove the client side can speak what berth refuses. */
async function permissiveServer (t: { after: (fn: () => void) => void }): Promise<number> {
  const c = await testCerts()
  const server = tls.createServer({ cert: readFileSync(c.cert), key: readFileSync(c.key), minVersion: 'TLSv1', ciphers: 'ALL@SECLEVEL=0' }, (s) => s.end())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  return (server.address() as import('node:net').AddressInfo).port
}

test('TLS 1.0 and 1.1 are refused; 1.2 and 1.3 are accepted', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const control = await permissiveServer(t)
  const old = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'ALL@SECLEVEL=0' } as const
  const ctl = await handshake(control, berth.ca, old)
  assert.equal(ctl.protocol, 'TLSv1.1', 'the client can speak TLS 1.1')
  ctl.socket?.destroy()
  assert.equal((await handshake(berth.port, berth.ca, old)).ok, false)
  for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
    const r = await handshake(berth.port, berth.ca, { minVersion: v, maxVersion: v })
    assert.equal(r.protocol, v)
    r.socket?.destroy()
  }
})

test('CBC suites are refused; ECDHE with AEAD is accepted', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const control = await permissiveServer(t)
  const cbc = { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA256' } as const
  const ctl = await handshake(control, berth.ca, cbc)
  assert.equal(ctl.ok, true, 'the client can negotiate CBC')
  ctl.socket?.destroy()
  assert.equal((await handshake(berth.port, berth.ca, cbc)).ok, false)
  const aead = await handshake(berth.port, berth.ca, { maxVersion: 'TLSv1.2' })
  assert.match(aead.cipher ?? '', /^ECDHE-ECDSA-(AES\d+-GCM|CHACHA20)/)
  aead.socket?.destroy()
})

test('client-initiated renegotiation is refused', async (t) => {
  const up = await startUpstream((req, res) => res.end())
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url])
  const r = await handshake(berth.port, berth.ca, { maxVersion: 'TLSv1.2' })
  assert.equal(r.ok, true)
  const socket = r.socket as tls.TLSSocket
  const outcome = await new Promise<string>((resolve) => {
    socket.on('error', (err) => resolve(`error: ${err.message}`))
    socket.on('close', () => resolve('closed'))
    socket.renegotiate({}, (err) => { if (err) resolve(`error: ${err.message}`); else resolve('renegotiated') })
    // The renegotiation handshake goes out with the next write.
    socket.write('GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n')
    setTimeout(() => resolve('timed out'), 5000).unref()
  })
  socket.destroy()
  assert.match(outcome, /^(error|closed)/)
})

test('serverTlsOptions maps the config: versions, ciphers, server preference, session timeout', async () => {
  const c = await testCerts()
  const config = parseConfig(`tls: { cert: ${c.cert}, key: ${c.key}, minVersion: TLSv1.3, preferServerCiphers: false, sessionTimeout: 10m, ciphers: "TLS_AES_256_GCM_SHA384" }\nupstream: { servers: [ { url: "http://127.0.0.1:1" } ] }`, '/x.yaml')
  const o = serverTlsOptions(config)
  assert.ok(o)
  assert.equal(o.minVersion, 'TLSv1.3')
  assert.equal(o.honorCipherOrder, false)
  assert.equal(o.sessionTimeout, 600)
  assert.equal(o.ciphers, 'TLS_AES_256_GCM_SHA384')
  assert.equal(serverTlsOptions(parseConfig('upstream: { servers: [ { url: "http://127.0.0.1:1" } ] }', '/x.yaml')), null)
})
