// The configuration reference in docs/configuration.md, generated from the schema (scripts/config-docs.ts writes it;
// test/config/docs.test.ts fails when the document is out of date).
import type { TSchema } from '@sinclair/typebox'
import { ConfigSchema } from './schema.js'

interface Node extends TSchema {
  type?: string
  properties?: Record<string, Node>
  items?: Node
  anyOf?: Node[]
  const?: unknown
  required?: string[]
  description?: string
  expected?: string
  default?: unknown
  minimum?: number
}

function typeOf (s: Node): string {
  if (s.type === 'array') return 'list'
  if (s.type === 'object') return 'map'
  if (s.expected === 'a file path') return 'path'
  if (s.expected !== undefined && s.anyOf === undefined) return s.type ?? 'string'
  if (s.anyOf) {
    if (s.anyOf.every((b) => b.const !== undefined)) return s.anyOf.map((b) => `\`${String(b.const)}\``).join(' \\| ')
    // a word or a count (`workers: auto | 4`)
    if (s.anyOf.every((b) => b.const !== undefined || b.type === 'integer')) return s.anyOf.map((b) => b.const !== undefined ? `\`${String(b.const)}\`` : 'integer').join(' \\| ')
    return (s.expected ?? '').includes('size') ? 'size' : 'duration'
  }
  return s.type ?? 'any'
}

function defaultOf (s: Node, path: string): string {
  if (s.default === undefined || (typeof s.default === 'object' && s.default !== null)) return ''
  if (path === 'tls.ciphers') return 'ECDHE+AEAD, TLS 1.3 suites'
  return `\`${String(s.default)}\``
}

function rows (s: Node, path: string, required: boolean, out: string[]): void {
  if (s.type === 'object' && s.properties) {
    const req = required && s.default === undefined ? ', required' : ''
    if (path !== '') out.push(`| **\`${path}\`** | section${req} | | ${s.description ?? ''} |`)
    for (const [k, v] of Object.entries(s.properties)) rows(v, path ? `${path}.${k}` : k, (s.required ?? []).includes(k), out)
    return
  }
  if (s.type === 'array' && s.items?.type === 'object') {
    out.push(`| \`${path}\` | list${required ? ', required' : ''} | | ${s.description ?? ''} |`)
    for (const [k, v] of Object.entries(s.items.properties ?? {})) rows(v, `${path}[].${k}`, (s.items.required ?? []).includes(k), out)
    return
  }
  const req = required && s.default === undefined ? ', required' : ''
  out.push(`| \`${path}\` | ${typeOf(s)}${req} | ${defaultOf(s, path)} | ${s.description ?? ''} |`)
}

export function configReference (): string {
  const out = ['| key | type | default | meaning |', '| --- | --- | --- | --- |']
  rows(ConfigSchema as Node, '', true, out)
  return out.join('\n') + '\n'
}

export const BEGIN = '<!-- config-reference:begin (generated from src/config/schema.ts by npm run docs:config) -->'
export const END = '<!-- config-reference:end -->'

export function withReference (readme: string): string {
  const a = readme.indexOf(BEGIN)
  const b = readme.indexOf(END)
  if (a === -1 || b === -1) throw new Error('docs/configuration.md lacks the config-reference markers')
  return readme.slice(0, a + BEGIN.length) + '\n' + configReference() + readme.slice(b)
}
