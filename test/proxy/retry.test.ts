// The retry policy without sockets: nginx's proxy_next_upstream conditions, replay rules and bounds.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { canReplay, causeOf, InvalidResponse, isServerFailure, RetryStatus, tryAgain, type RetryPolicy } from '../../src/proxy/retry.js'

const policy: RetryPolicy = { retryOn: new Set(['error', 'timeout', 'http_502']), tries: 0, timeout: 0, nonIdempotent: false }
const fresh = { method: 'GET', hasBody: false, sent: true, tried: 1, elapsed: 0, anotherServer: true }

test('the next server is tried only for a listed condition, while another server is left', () => {
  assert.equal(tryAgain(policy, 'error', fresh), true)
  assert.equal(tryAgain(policy, 'http_502', fresh), true)
  assert.equal(tryAgain(policy, 'http_500', fresh), false, 'not listed')
  assert.equal(tryAgain(policy, 'invalid_header', fresh), false, 'not listed')
  assert.equal(tryAgain(policy, 'error', { ...fresh, anotherServer: false }), false)
  assert.equal(tryAgain({ ...policy, retryOn: new Set() }, 'error', fresh), false, 'on: [] never')
})

test('tries and the time budget bound the tries', () => {
  const bounded = { ...policy, tries: 2, timeout: 1000 }
  assert.equal(tryAgain(bounded, 'error', { ...fresh, tried: 1 }), true)
  assert.equal(tryAgain(bounded, 'error', { ...fresh, tried: 2 }), false, 'tries reached')
  assert.equal(tryAgain(bounded, 'error', { ...fresh, elapsed: 999 }), true)
  assert.equal(tryAgain(bounded, 'error', { ...fresh, elapsed: 1000 }), false, 'budget spent')
})

test('replay rules: a body that started streaming never goes elsewhere; a sent POST, PATCH or PUT only with nonIdempotent', () => {
  for (const method of ['GET', 'HEAD', 'OPTIONS', 'DELETE', 'POST', 'PATCH', 'PUT']) {
    const idempotent = !['POST', 'PATCH', 'PUT'].includes(method)
    assert.equal(canReplay(method, false, false, false), true, `${method}: never reached the server`)
    assert.equal(canReplay(method, true, false, false), true, `${method} with a body that was never read`)
    assert.equal(canReplay(method, true, true, false), false, `${method} with a body that started streaming`)
    assert.equal(canReplay(method, true, true, true), false, `${method}: a started body, even with nonIdempotent`)
    assert.equal(canReplay(method, false, true, false), idempotent, `${method} without a body, sent`)
    assert.equal(canReplay(method, false, true, true), true, `${method} without a body, sent, nonIdempotent`)
    assert.equal(tryAgain(policy, 'error', { ...fresh, method, hasBody: true }), false)
  }
  assert.equal(tryAgain(policy, 'error', { ...fresh, method: 'PUT', sent: false, hasBody: true }), true, 'refused before anything was sent')
})

test('causes in nginx\'s words, and which count against the server', () => {
  assert.equal(causeOf(new RetryStatus(503)), 'http_503')
  assert.equal(new RetryStatus(503).message, 'status 503')
  assert.equal(causeOf(new InvalidResponse('bad range')), 'invalid_header')
  for (const code of ['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'BERTH_ERR_UPSTREAM_TIMEOUT']) {
    assert.equal(causeOf(Object.assign(new Error('x'), { code })), 'timeout', code)
  }
  assert.equal(causeOf(Object.assign(new Error('x'), { code: 'HPE_INVALID_CONSTANT' })), 'invalid_header')
  assert.equal(causeOf(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), 'error')
  assert.deepEqual(['error', 'timeout', 'invalid_header', 'digest', 'http_502'].map((c) => isServerFailure(c as never)), [true, true, true, true, false])
})
