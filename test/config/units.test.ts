import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseDuration, parseSize, formatSize } from '../../src/config/units.js'

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

test('durations: milliseconds, ms, s, m, h', () => {
  assert.equal(parseDuration(250), 250)
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
