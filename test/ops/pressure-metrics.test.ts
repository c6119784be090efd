// Load shedding and Prometheus metrics.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { FastifyRequest } from 'fastify'
import { startBerth, startUpstream, request, registryError, sleep, adminGet } from '../helper.js'
import { requestMetrics } from '../../src/metrics.js'

test('an event loop blocked past maxEventLoopDelay sheds new requests with 503 + Retry-After; health stays up', async (t) => {
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { pressure: { maxEventLoopDelay: '100ms', retryAfter: '7s' }, admin: { port: 0 } })
  assert.equal((await request(berth, '/v2/')).status, 200)
  // under-pressure samples the delay once a second; a block that begins just as a sample is due can be
  // measured after that sample ran (and the busy machine of a parallel test run sometimes does that):
  // block again, at another phase of the sampler. Shedding that never happens still fails.
  let shed = { status: 0 } as Awaited<ReturnType<typeof request>>
  for (let attempt = 0; attempt < 3 && shed.status !== 503; attempt++) {
    const end = Date.now() + 1500
    while (Date.now() < end) { /* block the event loop on purpose */ }
    await sleep(20)
    shed = await request(berth, '/v2/')
  }
  assert.equal(shed.status, 503)
  assert.equal(shed.headers['retry-after'], '7')
  assert.equal(shed.headers['docker-distribution-api-version'], 'registry/2.0')
  assert.deepEqual(registryError(shed.body), { code: 'UNAVAILABLE', message: 'berth is overloaded; retry later', detail: null } as never)
  assert.equal((await adminGet(berth, '/healthz')).status, 200, 'health endpoints keep answering')
  await sleep(2500)
  assert.equal((await request(berth, '/v2/')).status, 200, 'recovered')
  assert.match((await adminGet(berth, '/metrics')).body, /^berth_shed_requests_total [1-9]/m)
})

/** Prometheus text exposition format, line by line. */
function parsePrometheus (text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('#')) {
      assert.match(line, /^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped))$/, line)
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]?Inf)$/.exec(line) // Prometheus parses floats as Go does: NaN in any case
    assert.ok(m, `not a Prometheus sample: ${line}`)
    samples.set(m[1], Number(m[2]))
  }
  return samples
}

test('/metrics: Prometheus text whose counters move with requests', async (t) => {
  const up = await startUpstream((req, res) => res.end('x'.repeat(1000)))
  t.after(() => up.close())
  const berth = await startBerth(t, [up.url], { admin: { port: 0 } })
  const first = await adminGet(berth, '/metrics')
  assert.equal(first.status, 200)
  assert.match(first.type ?? '', /^text\/plain; version=0\.0\.4/)
  const before = parsePrometheus(first.body)
  for (let i = 0; i < 5; i++) await request(berth, '/v2/app/blobs/sha256:abc')
  await request(berth, '/v2/app/blobs/uploads/', { method: 'POST', headers: { 'content-length': 0 } })
  await request(berth, '/v2/app/blobs/uploads/u', { method: 'PATCH', body: Buffer.alloc(5000), headers: { 'content-length': 5000 } })
  await request(berth, '/v2/Bad/manifests/x')
  const after = parsePrometheus((await adminGet(berth, '/metrics')).body)
  const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0)
  assert.equal(delta('berth_requests_total{method="GET",status="2xx",action="pull"}'), 5)
  assert.equal(delta('berth_requests_total{method="POST",status="2xx",action="push"}'), 1)
  assert.equal(delta('berth_requests_total{method="GET",status="4xx",action="other"}'), 1)
  assert.ok(delta('berth_sent_bytes_total') >= 7000)
  assert.ok(delta('berth_received_bytes_total') >= 5000)
  assert.equal(delta('berth_request_duration_seconds_count{action="pull"}'), 5)
  assert.equal(after.get('berth_requests_in_flight'), 0)
  assert.equal(after.get(`berth_upstream_up{upstream="${up.url}"}`), 1)
  assert.equal(after.get(`berth_upstream_requests_total{upstream="${up.url}"}`), 7)
  assert.equal(delta('berth_requests_total{method="PATCH",status="2xx",action="push"}'), 1)
  assert.equal(after.get('berth_reloads_total{outcome="ok"}'), 0)
  assert.ok((after.get('berth_process_resident_memory_bytes') ?? 0) > 0)
})

test('the request metrics: the same text and the same sums across workers as prom-client\'s own metrics', async () => {
  // berth counts requests in plain numbers and exports them when scraped; prom-client's labelled metrics,
  // fed the same requests, are the reference.
  const answers: Array<{ method: string, url: string, kind: string, status: number, seconds: number, sent: number }> = [
    { method: 'GET', url: '/v2/a/blobs/sha256:1', kind: 'blob', status: 200, seconds: 0.004, sent: 10 },
    { method: 'GET', url: '/v2/a/blobs/sha256:1', kind: 'blob', status: 200, seconds: 0.005, sent: 10 }, // on a bound
    { method: 'HEAD', url: '/v2/a/manifests/1', kind: 'manifest', status: 404, seconds: 0.3, sent: 0 },
    { method: 'PUT', url: '/v2/a/blobs/uploads/u', kind: 'upload', status: 201, seconds: 12, sent: 0 },
    { method: 'GET', url: '/v2/', kind: 'base', status: 401, seconds: 0.0001, sent: 95 },
    { method: 'DELETE', url: '/v2/a/manifests/1', kind: 'manifest', status: 202, seconds: 500, sent: 0 } // past the last bound
  ]
  const ours = new Registry()
  const requests = requestMetrics(ours)
  const reference = new Registry()
  const total = new Counter({ name: 'berth_requests_total', help: 'Requests answered, by method, status class and action.', labelNames: ['method', 'status', 'action'], registers: [reference] })
  const durations = new Histogram({ name: 'berth_request_duration_seconds', help: 'Time from the request to the end of its response, by action.', labelNames: ['action'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [reference] })
  const sent = new Counter({ name: 'berth_sent_bytes_total', help: 'Response body bytes sent to clients.', registers: [reference] })
  new Counter({ name: 'berth_received_bytes_total', help: 'Request body bytes read from clients.', registers: [reference] }).inc(0)
  new Gauge({ name: 'berth_requests_in_flight', help: 'Requests being answered now.', registers: [reference] }).set(1)
  requests.start() // one still in flight
  for (const a of answers) {
    const request = { raw: { method: a.method, url: a.url, headers: {}, complete: true }, registryAction: { kind: a.kind }, bodyBytesSent: a.sent, bodyBytesReceived: 0 }
    requests.start()
    requests.done(request as unknown as FastifyRequest, a.status, a.seconds)
    const action = a.kind === 'base' || a.method === 'DELETE' ? 'other' : a.method === 'PUT' ? 'push' : 'pull'
    total.inc({ method: a.method, status: `${Math.floor(a.status / 100)}xx`, action })
    durations.observe({ action }, a.seconds)
    sent.inc(a.sent)
  }
  const sorted = async (r: Registry) => (await r.metrics()).split('\n').sort()
  assert.deepEqual(await sorted(ours), await sorted(reference))
  // Workers: the primary sums every worker's metrics (prom-client's AggregatorRegistry, from their JSON).
  const summed = async (r: Registry) => (await AggregatorRegistry.aggregate([await r.getMetricsAsJSON(), await r.getMetricsAsJSON()]).metrics()).split('\n').sort()
  assert.deepEqual(await summed(ours), await summed(reference))
  assert.ok((await ours.metrics()).includes('berth_request_duration_seconds_bucket{le="0.005",action="pull"} 2'))
})
