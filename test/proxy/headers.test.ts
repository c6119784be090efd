// The header policy without sockets: Host always sent, forwarding headers only from trusted proxies,
// upstream addresses in Location and Link turned into berth's own origin.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { clientResponseHeaders, rewriteUrl, upstreamRequestHeaders, type ClientSide } from '../../src/proxy/headers.js'
import { TrustedProxies, cidrProblem, isIpAddress, peerAddress } from '../../src/net.js'

function req (raw: string[]): IncomingMessage {
  const headers: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) headers[raw[i].toLowerCase()] ??= raw[i + 1]
  return { rawHeaders: raw, headers } as unknown as IncomingMessage
}
const f: ClientSide = { proto: 'https', client: '192.0.2.7', peer: '192.0.2.7', trusted: false, fallbackHost: 'registry.example.com:8443' }
const pairs = (flat: string[]) => Array.from({ length: flat.length / 2 }, (_, i) => `${flat[2 * i]}: ${flat[2 * i + 1]}`)

test('Host is never dropped, not even when Connection names it; without one the fallback is sent', () => {
  const kept = upstreamRequestHeaders(req(['Host', 'reg.example:443', 'Connection', 'close, Host, X-Secret', 'X-Secret', 's']), f)
  assert.deepEqual(pairs(kept.headers), ['host: reg.example:443', 'x-real-ip: 192.0.2.7', 'x-forwarded-for: 192.0.2.7', 'x-forwarded-proto: https'])
  assert.equal(kept.publicOrigin, 'https://reg.example:443')
  const none = upstreamRequestHeaders(req(['User-Agent', 'old/1.0']), f)
  assert.deepEqual(pairs(none.headers).slice(0, 2), ['user-agent: old/1.0', 'host: registry.example.com:8443'])
  assert.equal(none.publicOrigin, 'https://registry.example.com:8443')
})

test('forwarding headers from an untrusted peer are all dropped; from a trusted one For, Proto, Host and Forwarded pass', () => {
  const spoof = ['Host', 'h', 'X-Forwarded-For', '1.1.1.1', 'X-Forwarded-Host', 'evil.example', 'X-Forwarded-Proto', 'http',
    'X-Forwarded-Prefix', '/x', 'X-Real-IP', '6.6.6.6', 'Forwarded', 'host=evil.example;proto=http', 'FORWARDED', 'for=1']
  assert.deepEqual(pairs(upstreamRequestHeaders(req(spoof), f).headers), ['host: h', 'x-real-ip: 192.0.2.7', 'x-forwarded-for: 192.0.2.7', 'x-forwarded-proto: https'])
  const trusted = upstreamRequestHeaders(req(spoof), { ...f, trusted: true, client: '1.1.1.1', peer: '10.0.0.2' })
  assert.deepEqual(pairs(trusted.headers), ['host: h', 'forwarded: host=evil.example;proto=http', 'forwarded: for=1', 'x-forwarded-host: evil.example',
    'x-real-ip: 1.1.1.1', 'x-forwarded-for: 1.1.1.1, 10.0.0.2', 'x-forwarded-proto: http'])
  assert.equal(trusted.publicOrigin, 'http://evil.example')
})

test('a Location or Link naming an upstream server is moved to berth\'s origin, path and query unchanged', () => {
  const ups = new Set(['https://127.0.0.1:5000', 'https://reg.internal'])
  assert.equal(rewriteUrl('https://127.0.0.1:5000/v2/a/blobs/uploads/u?_state=x%2Fy', ups, 'https://r.example'), 'https://r.example/v2/a/blobs/uploads/u?_state=x%2Fy')
  assert.equal(rewriteUrl('HTTPS://REG.INTERNAL:443/v2/', ups, 'https://r.example'), 'https://r.example/v2/', 'scheme and host case, the default port')
  assert.equal(rewriteUrl('https://127.0.0.1:5001/v2/', ups, 'https://r.example'), 'https://127.0.0.1:5001/v2/', 'another origin is left alone')
  assert.equal(rewriteUrl('/v2/a/blobs/uploads/u', ups, 'https://r.example'), '/v2/a/blobs/uploads/u', 'relative')
  assert.equal(rewriteUrl('https://127.0.0.1:5000', ups, 'https://r.example'), 'https://r.example')
  const out = clientResponseHeaders({
    location: 'https://127.0.0.1:5000/v2/x',
    link: '<https://reg.internal/v2/_catalog?last=b&n=2>; rel="next"',
    connection: 'x-hop',
    'x-hop': '1',
    'x-kept': 'y'
  }, ups, 'https://r.example:8443')
  assert.deepEqual(out, { location: 'https://r.example:8443/v2/x', link: '<https://r.example:8443/v2/_catalog?last=b&n=2>; rel="next"', 'x-kept': 'y' })
})

test('trusted proxies: the client is the nearest address in X-Forwarded-For that is not a trusted proxy', () => {
  const t = new TrustedProxies(['10.0.0.0/8', '::1', '2001:db8::/32'])
  assert.equal(t.clientOf('203.0.113.9', '1.1.1.1'), '203.0.113.9', 'an untrusted peer is the client')
  assert.equal(t.clientOf('10.0.0.1', '1.1.1.1, 2.2.2.2'), '2.2.2.2')
  assert.equal(t.clientOf('10.0.0.1', '1.1.1.1, 10.9.9.9'), '1.1.1.1', 'recursive, as real_ip_recursive on')
  assert.equal(t.clientOf('::1', '10.1.1.1, 10.2.2.2'), '10.1.1.1', 'all trusted: the farthest')
  assert.equal(t.clientOf('10.0.0.1', 'garbage, 2.2.2.2'), '2.2.2.2')
  assert.equal(t.clientOf('10.0.0.1', '2.2.2.2, garbage'), '10.0.0.1', 'not an address: the last trusted hop')
  assert.equal(t.clientOf('10.0.0.1', '::ffff:2.2.2.2'), '2.2.2.2')
  assert.equal(t.clientOf('10.0.0.1', undefined), '10.0.0.1')
  assert.ok(t.trusts('2001:db8::1') && !t.trusts('2001:db9::1') && !t.trusts('nonsense'))
  assert.equal(new TrustedProxies([]).clientOf('10.0.0.1', '1.1.1.1'), '10.0.0.1')
  assert.equal(cidrProblem('10.0.0.0/8'), null)
  assert.equal(cidrProblem('fd00::/8'), null)
  assert.match(cidrProblem('10.0.0.0/33') ?? '', /prefix length from 0 to 32/)
  assert.match(cidrProblem('localhost') ?? '', /IP address or a CIDR block/)
  assert.equal(peerAddress({ socket: { remoteAddress: '::ffff:127.0.0.1' } }), '127.0.0.1')
})

test('every hop-by-hop header is dropped both ways, and every header Connection names, except Host', () => {
  const hop = ['Connection', 'x-named', 'Keep-Alive', 'timeout=5', 'Proxy-Connection', 'keep-alive', 'TE', 'trailers', 'Trailer', 'x-t', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c']
  const kept = upstreamRequestHeaders(req(['Host', 'h', ...hop, 'X-Named', 'secret', 'Expect', '100-continue', 'X-Kept', '1', 'Close', 'c', 'Keep', 'k']), f)
  assert.deepEqual(pairs(kept.headers).slice(0, 4), ['host: h', 'x-kept: 1', 'close: c', 'keep: k'], 'Connection: x-named drops X-Named; expect is berth\'s')
  const closing = upstreamRequestHeaders(req(['Host', 'h', 'Connection', 'Close, Keep-Alive, , X-A', 'X-A', '1', 'X-B', '2', 'Close', 'c']), f)
  assert.deepEqual(pairs(closing.headers).slice(0, 3), ['host: h', 'x-b: 2', 'close: c'], '`Connection: close` names no header')
  const out = clientResponseHeaders({ connection: 'close, x-secret', 'keep-alive': 'timeout=5', 'proxy-connection': 'x', te: 'x', trailer: 'x', 'transfer-encoding': 'chunked', upgrade: 'x', 'x-secret': 's', close: 'kept', 'x-origin': 'https://127.0.0.1:5000/v2/' }, new Set(['https://127.0.0.1:5000']), 'https://r.example')
  assert.deepEqual(out, { close: 'kept', 'x-origin': 'https://127.0.0.1:5000/v2/' }, 'only Location and Link are rewritten')
})

test('forwarding headers are recognised by their whole name; a trusted proxy\'s values are checked before they pass', () => {
  const look = ['Host', 'h', 'X-My-Forwarded', 'a', 'Forwarded-By', 'b', 'X-Real-IP-V6', 'c', 'Via-X-Forwarded-For', 'd']
  assert.deepEqual(pairs(upstreamRequestHeaders(req(look), f).headers).slice(0, 5), ['host: h', 'x-my-forwarded: a', 'forwarded-by: b', 'x-real-ip-v6: c', 'via-x-forwarded-for: d'])
  const t = { ...f, trusted: true, peer: '10.0.0.2', client: '1.1.1.1' }
  const proto = (v: string) => pairs(upstreamRequestHeaders(req(['Host', 'h', 'X-Forwarded-Proto', v]), t).headers).at(-1)
  assert.equal(proto('https'), 'x-forwarded-proto: https')
  assert.equal(proto('http'), 'x-forwarded-proto: http')
  assert.equal(proto('HTTP'), 'x-forwarded-proto: https', 'not one of the two: berth\'s own')
  assert.equal(proto('ftp'), 'x-forwarded-proto: https')
  const host = (...values: string[]) => upstreamRequestHeaders(req(['Host', 'h', ...values.flatMap((v) => ['X-Forwarded-Host', v])]), t)
  assert.equal(host(' r.example:8443 , other').publicOrigin, 'https://r.example:8443', 'the first of a list, trimmed')
  assert.equal(host('[::1]:443').publicOrigin, 'https://[::1]:443')
  assert.equal(host('a').publicOrigin, 'https://a', 'a one-letter name')
  const plain = { ...t, proto: 'http' as const }
  assert.equal(pairs(upstreamRequestHeaders(req(['Host', 'h', 'X-Forwarded-Proto', 'https']), plain).headers).at(-1), 'x-forwarded-proto: https', 'a balancer that terminated TLS')
  assert.equal(upstreamRequestHeaders(req(['Host', 'h', 'X-Forwarded-For', 'http']), plain).publicOrigin, 'http://h', 'only X-Forwarded-Proto names the scheme')
  assert.equal(host('first.example', 'second.example').publicOrigin, 'https://first.example', 'the first header')
  for (const bad of ['a_b', 'a.', '-a', '[zz]', 'a:123456', 'a b', '']) assert.equal(host(bad).publicOrigin, 'https://h', JSON.stringify(bad))
  assert.deepEqual(pairs(upstreamRequestHeaders(req(['Host', 'h', 'X-Forwarded-For', '1.1.1.1', 'X-Forwarded-For', '2.2.2.2']), t).headers).at(-2), 'x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.2')
})

test('only an absolute URL whose origin is an upstream\'s is rewritten', () => {
  const ups = new Set(['https://127.0.0.1:5000'])
  assert.equal(rewriteUrl('/v2/x?next=https://127.0.0.1:5000/y', ups, 'https://r.example'), '/v2/x?next=https://127.0.0.1:5000/y')
  assert.equal(rewriteUrl('x https://127.0.0.1:5000/y', ups, 'https://r.example'), 'x https://127.0.0.1:5000/y')
  assert.equal(rewriteUrl('https://127.0.0.1:5000?x', ups, 'https://r.example'), 'https://r.example?x')
  assert.equal(rewriteUrl('https://[not an origin/x', ups, 'https://r.example'), 'https://[not an origin/x')
  const links = clientResponseHeaders({ link: ['<https://127.0.0.1:5000/a>; rel="next"', '</b>; rel="prev"'] }, ups, 'https://r.example')
  assert.deepEqual(links.link, ['<https://r.example/a>; rel="next"', '</b>; rel="prev"'])
})

test('peer addresses and CIDR blocks: every malformed prefix is refused', () => {
  assert.equal(peerAddress({ socket: null }), '')
  assert.equal(peerAddress({ socket: {} }), '')
  assert.equal(peerAddress({ socket: { remoteAddress: '::ffff:fe80::1' } }), '::ffff:fe80::1', 'not a mapped IPv4 address: as it is')
  assert.equal(peerAddress({ socket: { remoteAddress: '10.0.0.1' } }), '10.0.0.1')
  assert.deepEqual(['10.0.0.1', '[::1]', '::1', 'fd00::1', 'registry.example', '[registry]', '10.0.0'].map(isIpAddress), [true, true, true, true, false, false, false])
  assert.equal(cidrProblem('fd00::/64'), null)
  assert.equal(cidrProblem('10.0.0.1'), null)
  assert.equal(cidrProblem('10.0.0.0/16'), null)
  assert.equal(cidrProblem('10.0.0.0/32'), null)
  assert.equal(cidrProblem('::/128'), null)
  for (const bad of ['10.0.0.0/x5', '10.0.0.0/5x', '10.0.0.0/', '10.0.0.0/1234', 'fd00::/129', '10.0.0.0/8/8', '10.0.0.0/-1']) assert.notEqual(cidrProblem(bad), null, bad)
})
