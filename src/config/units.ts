// Sizes and durations as nginx writes them ("300m", "5s"). A size may be a plain number (bytes); a
// duration needs its unit (0 excepted): nginx reads a bare number as seconds, and `clientIdle: 60` meant
// as a minute must not cut downloads after 60 ms, so a bare number is refused, never guessed.

export const SIZE_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgG])?[bB]?\\s*$'
export const DURATION_PATTERN = '^\\s*(?:0|\\d+(\\.\\d+)?\\s*(ms|s|m|h|d))\\s*$'

const SIZE_RE = new RegExp(SIZE_PATTERN)
const DURATION_RE = new RegExp(DURATION_PATTERN)
const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }
const DURATION_UNITS: Record<string, number> = { '': 0, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

export function parseSize (value: number | string): number {
  if (typeof value === 'number') return value
  const m = SIZE_RE.exec(value)
  if (m === null) throw new RangeError(`not a size: ${JSON.stringify(value)}`)
  return Math.round(Number.parseFloat(value) * SIZE_UNITS[(m[2] ?? '').toLowerCase()])
}

export function parseDuration (value: number | string): number {
  if (value === 0) return 0
  if (typeof value === 'number') throw new RangeError(`a duration needs its unit: ${value}s or ${value}ms?`)
  const m = DURATION_RE.exec(value)
  if (m === null) throw new RangeError(`not a duration: ${JSON.stringify(value)}`)
  return Math.round(Number.parseFloat(value) * DURATION_UNITS[m[2] ?? ''])
}

export function formatDuration (ms: number): string {
  for (const [unit, n] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`
  }
  return `${ms}ms`
}

export function formatSize (bytes: number): string {
  for (const [unit, n] of [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n} ${unit}`
  }
  return `${bytes} bytes`
}
