// berth's version, from its package.json (one level up from src/, two from the compiled dist/src/).
import { existsSync, readFileSync } from 'node:fs'

function packageJson (): URL {
  const near = new URL('../package.json', import.meta.url)
  return existsSync(near) ? near : new URL('../../package.json', import.meta.url)
}

export const VERSION: string = (JSON.parse(readFileSync(packageJson(), 'utf8')) as { version: string }).version
