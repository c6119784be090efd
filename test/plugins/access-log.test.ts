import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatCombined, timeLocal, type AccessEntry } from '../../plugins/access-log.js'
import { EventEmitter } from 'node:events'
import type { ServerResponse } from 'node:http'
import { whenResponseDone } from '../../src/response-done.js'
import { startBerth, startUpstream, request, htpasswdFile, basic, waitFor } from '../helper.js'

const entry: AccessEntry = {
  remoteAddr: '10.0.0.7',
  remoteUser: null,
  key: null,
  time: Date.UTC(2026, 10, 29, 16, 58, 53),
  method: 'GET',
  url: '/v2/app/manifests/v1',
  httpVersion: '1.1',
  status: 200,
  bodyBytesSent: 2624,
  referer: undefined,
  userAgent: 'docker/24.0.7 go/go1.20 "quoted"',
  requestTime: 0.0123,
  upstream: '127.0.0.1:5000',
  completed: true
}

test('combined format is nginx main plus request time and upstream; quotes escaped as nginx does', () => {
  const line = formatCombined(entry)
  assert.match(line, /^10\.0\.0\.7 - - \[\d\d\/Nov\/2026:\d\d:\d\d:53 [+-]\d{4}\] "GET \/v2\/app\/manifests\/v1 HTTP\/1\.1" 200 2624 "-" "docker\/24\.0\.7 go\/go1\.20 \\x22quoted\\x22" rt=0\.012 upstream=127\.0\.0\.1:5000\n$/)
  assert.match(formatCombined({ ...entry, completed: false, upstream: '' }), /upstream=- aborted\n$/)
  // A request made with an access key names the key after the upstream.
  assert.match(formatCombined({ ...entry, remoteUser: 'ci-bot', key: '0123456789ab' }), /^10\.0\.0\.7 - ci-bot .* upstream=127\.0\.0\.1:5000 key=0123456789ab\n$/)
  assert.match(timeLocal(Date.now()), /^\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}$/)
})

test('one line per request, proxied or refused, with status, bytes and upstream; JSON when asked', async (t) => {
  const up = await startUpstream((req, res) => res.end('x'.repeat(1234)))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { limits: { maxBodySize: 10 } })
  await request(berth, '/v2/a/manifests/latest', { headers: { 'user-agent': 'skopeo/1.9', authorization: 'Basic YTpi' } })
  await request(berth, '/v2/a/blobs/uploads/x', { method: 'PUT', body: 'y'.repeat(100), headers: { 'content-length': 100 } })
  await berth.close()
  const lines = berth.accessLog().trim().split('\n')
  assert.equal(lines.length, 2)
  assert.match(lines[0], new RegExp(`^127\\.0\\.0\\.1 - - \\[.*\\] "GET /v2/a/manifests/latest HTTP/1\\.1" 200 1234 "-" "skopeo/1\\.9" rt=\\d+\\.\\d{3} upstream=127\\.0\\.0\\.1:${up.port}$`))
  const body413 = '{"errors":[{"code":"SIZE_INVALID","message":"request body exceeds the limit of 10 bytes","detail":null}]}'
  assert.match(lines[1], new RegExp(`^127\\.0\\.0\\.1 - - \\[.*\\] "PUT /v2/a/blobs/uploads/x HTTP/1\\.1" 413 ${body413.length} .* upstream=-$`))
  assert.doesNotMatch(berth.accessLog(), /YTpi/)

  const json = await startBerth(t, [up.url], { log: { format: 'json' } })
  await request(json, '/v2/a/manifests/latest?n=1', { headers: { authorization: 'Basic YTpi' } })
  await json.close()
  const e = JSON.parse(json.accessLog()) as AccessEntry
  assert.equal(e.method, 'GET')
  assert.equal(e.url, '/v2/a/manifests/latest?n=1')
  assert.equal(e.status, 200)
  assert.equal(e.bodyBytesSent, 1234)
  assert.equal(e.upstream, `127.0.0.1:${up.port}`)
  assert.equal(e.completed, true)
  assert.match(json.accessLog(), /"requestTime":\d+(\.\d{1,3})?,/, 'seconds, to the millisecond')
  assert.doesNotMatch(json.accessLog(), /YTpi/)
})

test('a 413 line names the user: the body limit is checked after authentication (a stranger gets 401)', async (t) => {
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { limits: { maxBodySize: 10 }, auth: { htpasswd: htpasswdFile(t, ['alice']) } })
  const big = { method: 'PUT', body: 'y'.repeat(100), headers: { 'content-length': 100 } }
  assert.equal((await request(berth, '/v2/a/blobs/uploads/x', big)).status, 401)
  assert.equal((await request(berth, '/v2/a/blobs/uploads/x', { ...big, headers: { ...big.headers, authorization: basic('alice') } })).status, 413)
  // the client can read the answer before the server's side of the closing connection has finished
  await waitFor(() => berth.accessLog().includes('" 413 '), 3000, 'the 413 line')
  await berth.close()
  const lines = berth.accessLog().trim().split('\n')
  assert.equal(lines.length, 2, berth.accessLog())
  assert.match(lines[0], /^127\.0\.0\.1 - - .* 401 /)
  assert.match(lines[1], /^127\.0\.0\.1 - alice \[.*\] "PUT \/v2\/a\/blobs\/uploads\/x HTTP\/1\.1" 413 /)
})

test('the local time is made once a second and is right at each second', () => {
  const a = timeLocal(new Date(2026, 10, 29, 16, 58, 53, 100).getTime())
  assert.equal(timeLocal(new Date(2026, 10, 29, 16, 58, 53, 900).getTime()), a)
  assert.match(a, /^29\/Nov\/2026:16:58:53 /)
  assert.match(timeLocal(new Date(2026, 10, 29, 16, 58, 54, 0).getTime()), /^29\/Nov\/2026:16:58:54 /)
  assert.match(timeLocal(new Date(2026, 11, 1, 0, 0, 0, 0).getTime()), /^01\/Dec\/2026:00:00:00 /)
})

test('every caller hears of a response once, on finish or on close, and one that comes late is told at once', () => {
  const res = new EventEmitter() as unknown as ServerResponse
  const heard: string[] = []
  whenResponseDone(res, () => heard.push('log'))
  whenResponseDone(res, () => heard.push('metrics'))
  assert.equal(res.listenerCount('finish'), 1)
  res.emit('finish')
  res.emit('close')
  assert.deepEqual(heard, ['log', 'metrics'])
  whenResponseDone(res, () => heard.push('late'))
  assert.deepEqual(heard, ['log', 'metrics', 'late'])
  const cut = new EventEmitter() as unknown as ServerResponse
  whenResponseDone(cut, () => heard.push('cut'))
  cut.emit('close')
  cut.emit('finish')
  assert.deepEqual(heard.slice(3), ['cut'])
})
