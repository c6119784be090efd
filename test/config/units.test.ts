import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseDuration, parseSize, formatSize } from '../../src/config/units.js'
import { parseConfig } from '../../src/config/load.js'

test('sizes: bytes, k, m, g, case and a trailing b', () => {
  assert.equal(parseSize(0), 0)
  assert.equal(parseSize(1234), 1234)
  assert.equal(parseSize('1234'), 1234)
  assert.equal(parseSize('300m'), 300 * 1024 * 1024)
  assert.equal(parseSize('300M'), 300 * 1024 * 1024)
  assert.equal(parseSize('1g'), 1024 ** 3)
  assert.equal(parseSize('1.5k'), 1536)
  assert.equal(parseSize('64kb'), 65536)
  assert.throws(() => parseSize('300 megabytes'), RangeError)
  assert.throws(() => parseSize('-1'), RangeError)
})

test('durations: ms, s, m, h, d; a bare number other than 0 is refused, never read as milliseconds or seconds', () => {
  assert.throws(() => parseDuration(250), /a duration needs its unit: 250s or 250ms\?/)
  assert.throws(() => parseDuration('60'), RangeError)
  assert.equal(parseDuration(0), 0)
  assert.equal(parseDuration('0'), 0)
  assert.equal(parseDuration('2d'), 172_800_000)
  assert.equal(parseDuration('500ms'), 500)
  assert.equal(parseDuration('5s'), 5000)
  assert.equal(parseDuration('15m'), 900_000)
  assert.equal(parseDuration('900s'), 900_000)
  assert.equal(parseDuration('1h'), 3_600_000)
  assert.equal(parseDuration('1.5s'), 1500)
  assert.throws(() => parseDuration('5 minutes'), RangeError)
})

test('formatSize prints the largest whole unit', () => {
  assert.equal(formatSize(300 * 1024 * 1024), '300 MB')
  assert.equal(formatSize(1024 ** 3), '1 GB')
  assert.equal(formatSize(1000), '1000 bytes')
})

test('a config with a bare-number duration is refused with the unit asked for; 0 and "60s" pass', () => {
  const base = 'upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n'
  assert.throws(() => parseConfig(base + 'timeouts: { clientIdle: 60 }\n', '/etc/berth/berth.yaml'),
    /line 2, column 25: timeouts\.clientIdle: expected a duration with its unit: ms, s, m, h or d \(e\.g\. 500ms, 60s, 15m\); a bare number other than 0 is refused \(nginx would read seconds\), got 60/)
  assert.throws(() => parseConfig(base + 'timeouts: { clientIdle: "60" }\n', '/etc/berth/berth.yaml'), /timeouts\.clientIdle: expected a duration with its unit/)
  assert.equal(parseConfig(base + 'timeouts: { clientIdle: 60s }\n', '/x/berth.yaml').timeouts.clientIdle, 60_000)
  assert.equal(parseConfig(base + 'shutdown: { drainTimeout: 0 }\n', '/x/berth.yaml').shutdown.drainTimeout, 0)
})
