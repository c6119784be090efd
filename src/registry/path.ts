// Registry paths: distribution's repository name grammar, the one canonical path form berth checks and
// forwards, the registry action a path asks for, and the access action a method needs.
import type { RegistryAction } from '../types.js'

// distribution's reference grammar: path components of lower-case alphanumerics joined by separators.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const NAME = `${COMPONENT}(?:/${COMPONENT})*`
const REPO_ROUTE = new RegExp(`^/v2/(${NAME})/(manifests|blobs|tags|referrers)/(.*)$`)
const REPOSITORY_NAME = new RegExp(`^${NAME}$`)
const REPO_INTENDED = /^\/v2\/.+\/(manifests|blobs|tags|referrers)\//

/** A whole repository name in distribution's grammar and length limit (also for a mount's `from`). */
export function isRepositoryName (name: string): boolean {
  return name.length <= 255 && REPOSITORY_NAME.test(name)
}

/**
 * The one canonical form berth checks and forwards: segments of the characters registry paths use
 * (names, tags, digests, upload ids), none starting with a dot (so no `.` or `..`), no empty segment
 * except a trailing slash, and no percent-encoding at all (`%2F`, `%2e`, `%252e`, overlong UTF-8), no
 * backslash, no `;`. Anything else could be read differently by berth and by the registry.
 */
const CANONICAL_PATH = /^(?:\/[A-Za-z0-9_:+=-][A-Za-z0-9._:+=-]*)*\/?$/

export function isCanonicalPath (path: string): boolean {
  return CANONICAL_PATH.test(path)
}

export function parseRegistryPath (path: string): RegistryAction {
  if (path === '/v2/' || path === '/v2') return { kind: 'base', repository: null, reference: null }
  if (path === '/v2/_catalog') return { kind: 'catalog', repository: null, reference: null }
  const m = REPO_ROUTE.exec(path)
  if (m === null) return { kind: 'other', repository: null, reference: null }
  const [, repository, segment, rest] = m
  if (segment === 'blobs' && (rest === 'uploads' || rest.startsWith('uploads/'))) {
    const id = rest.slice('uploads/'.length)
    return { kind: 'upload', repository, reference: id === '' ? null : id }
  }
  const kind = segment === 'manifests' ? 'manifest' : segment === 'blobs' ? 'blob' : segment === 'tags' ? 'tags' : 'referrers'
  return { kind, repository, reference: rest === '' || rest === 'list' && kind === 'tags' ? null : rest }
}

/** Whether a path that is not an API call berth knows was meant to name a repository (a bad name). */
export function namesBadRepository (path: string, action: RegistryAction): boolean {
  return (action.kind === 'other' && REPO_INTENDED.test(path)) || (action.repository !== null && action.repository.length > 255)
}

/** What a method does to a repository: GET, HEAD and OPTIONS pull; POST, PUT and PATCH push. */
export function methodAction (method: string | undefined): 'pull' | 'push' | 'delete' {
  switch (method) {
    case 'POST': case 'PUT': case 'PATCH': return 'push'
    case 'DELETE': return 'delete'
    default: return 'pull'
  }
}
