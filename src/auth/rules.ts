// Who may do what where: access rules over repository globs, plus what anonymous clients may do, and the
// verdict on one request: every repository it names, with the action each needs.
import picomatch from 'picomatch'
import type { BerthConfig } from '../config/schema.js'
import type { AccessLimit, Action, BerthUser, RegistryAction, ResourceActions } from '../types.js'
import { isRepositoryName, methodAction } from '../registry/path.js'
import { mountSources } from '../registry/parameters.js'

export type { Action }

/** A catalog filter that lets every name through (no access rules): the listing is not filtered at all. */
const ALL_REPOSITORIES = (_repository: string): boolean => true
type AuthConfig = NonNullable<BerthConfig['auth']>

/**
 * `*` within one path segment, `**` across segments, `?` one character (picomatch, with its other syntax
 * off: the schema admits only lower-case letters, digits, `. _ - /` and the wildcards anyway).
 */
export function globToRegExp (glob: string): RegExp {
  return picomatch.makeRe(glob, { dot: true, nobrace: true, noextglob: true, nonegate: true, strictSlashes: true })
}

interface Rule {
  users: Set<string> | null // null: anyone the rule reaches (anonymous rule)
  /** Group names the rule names, for users whose groups come from a directory (LDAP). */
  groups: Set<string>
  actions: Set<Action>
  repositories: RegExp[]
}

function reaches (rule: Rule, user: BerthUser): boolean {
  if (rule.users === null || rule.users.has(user.name)) return true
  return user.groups !== undefined && user.groups.some((g) => rule.groups.has(g))
}

/** `actions` on the repositories `globs` match (and the catalog, with `catalog`): an access key's scope. */
export function globLimit (globs: string[], actions: string[]): AccessLimit {
  const res = globs.map(globToRegExp)
  const allowed = new Set(actions)
  return { allows: (action, repository) => allowed.has(action) && (repository === null || res.some((re) => re.test(repository))) }
}

function matches (rule: Rule, action: Action, repository: string | null): boolean {
  if (!rule.actions.has(action)) return false
  return repository === null || rule.repositories.some((re) => re.test(repository))
}

export class AccessPolicy {
  #rules: Rule[] | null
  #anonymous: Rule | null

  constructor (auth: AuthConfig) {
    const compile = (repos: string[]) => repos.map(globToRegExp)
    this.#rules = auth.access === undefined
      ? null
      : auth.access.map((r) => ({
        users: new Set([...(r.users ?? []), ...(r.groups ?? []).flatMap((g) => auth.groups[g] ?? [])]),
        groups: new Set(r.groups ?? []),
        actions: new Set(r.actions as Action[]),
        repositories: compile(r.repositories)
      }))
    this.#anonymous = auth.anonymous === undefined
      ? null
      : { users: null, groups: new Set(), actions: new Set(auth.anonymous.actions as Action[]), repositories: compile(auth.anonymous.repositories) }
  }

  /**
   * May `user` (null = anonymous) do `action` on `repository` (null for catalog)? Never beyond the user's
   * limit (an access key's scope, a token's grants), whatever the rules say.
   */
  allows (user: BerthUser | null, action: Action, repository: string | null): boolean {
    if (user?.limit !== undefined && !user.limit.allows(action, repository)) return false
    if (this.#anonymous !== null && matches(this.#anonymous, action, repository)) return true
    if (user === null) return false
    if (this.#rules === null) return true // as nginx: every authenticated user may do everything
    for (const rule of this.#rules) {
      if (reaches(rule, user) && matches(rule, action, repository)) return true
    }
    return false
  }

  /**
   * GET /v2/_catalog: null when `user` may not list at all; else which names the listing may show: those a
   * catalog rule of the user covers and the user may pull (ALL_REPOSITORIES without access rules).
   */
  catalogFilter (user: BerthUser | null): ((repository: string) => boolean) | null {
    if (!this.allows(user, 'catalog', null)) return null
    if (user !== null && this.#rules === null && user.limit === undefined) return ALL_REPOSITORIES
    // A token's grants name the catalog, not each repository: the rules decide which names show.
    const rulesOnly = user?.via === 'token' ? { ...user, limit: undefined } : user
    return (repository) => this.allows(user, 'catalog', repository) && this.allows(rulesOnly, 'pull', repository)
  }

}

export type Verdict =
  /** `catalog`: for GET /v2/_catalog, the names the listing may show (null: all). */
  | { allowed: true, catalog: ((repository: string) => boolean) | null }
  /** not-api: 404, not forwarded; challenge: 401 (anonymous); denied: 403; name: 400 NAME_INVALID. */
  | { allowed: false, why: 'not-api' | 'challenge' | 'denied' | 'name', action?: Action, repository?: string }

const ALLOWED: Verdict = { allowed: true, catalog: null }

/** The access rules on one request, for `user` (null = anonymous). */
export function decide (policy: AccessPolicy, user: BerthUser | null, action: RegistryAction | null, method: string | undefined, url: string): Verdict {
  // Anonymous: a challenge. A token that lacks the grant: a challenge too, naming the scope, so the client
  // fetches a token for it (as the registry itself answers). Anyone else: 403.
  const refuse = (a?: Action, repository?: string): Verdict => ({
    allowed: false,
    why: user === null || (user.via === 'token' && a !== undefined && user.limit?.allows(a, repository ?? null) === false) ? 'challenge' : 'denied',
    action: a,
    repository
  })
  // Deny by default: a path that is not a registry API call berth understands is not forwarded, so no
  // endpoint (today's or a future one) can act on a repository unchecked.
  if (action === null || action.kind === 'other') return { allowed: false, why: 'not-api' }
  // GET /v2/ is what `docker login` checks: open to every authenticated user, never anonymous.
  if (action.kind === 'base') return user === null ? refuse() : ALLOWED
  if (action.kind === 'catalog') {
    const filter = policy.catalogFilter(user)
    if (filter === null) return refuse('catalog')
    return { allowed: true, catalog: filter === ALL_REPOSITORIES ? null : filter }
  }
  const repository = action.repository as string
  const needed = methodAction(method)
  if (!policy.allows(user, needed, repository)) return refuse(needed, repository)
  // A cross-repository mount reads the blob from every `from` it names.
  for (const from of action.kind === 'upload' ? mountSources(method, url) : []) {
    if (!isRepositoryName(from)) return { allowed: false, why: 'name', repository: from }
    if (!policy.allows(user, 'pull', from)) return refuse('pull', from)
  }
  return ALLOWED
}

const REPOSITORY_ACTIONS: Action[] = ['pull', 'push', 'delete']

/** What `user` asked for and may have: each requested action the rules (and the user's limit) allow. */
export function grant (policy: AccessPolicy, user: BerthUser | null, requested: ResourceActions[]): ResourceActions[] {
  const out = new Map<string, ResourceActions>()
  const add = (type: string, name: string, action: string) => {
    const k = `${type}:${name}`
    const entry = out.get(k) ?? { type, name, actions: [] }
    if (!entry.actions.includes(action)) entry.actions.push(action)
    out.set(k, entry)
  }
  for (const r of requested) {
    if (r.type === 'repository' && isRepositoryName(r.name)) {
      const wanted = r.actions.includes('*') ? REPOSITORY_ACTIONS : r.actions
      for (const a of wanted) if ((REPOSITORY_ACTIONS as string[]).includes(a) && policy.allows(user, a as Action, r.name)) add('repository', r.name, a)
    } else if (r.type === 'registry' && r.name === 'catalog' && r.actions.includes('*') && policy.allows(user, 'catalog', null)) {
      add('registry', 'catalog', '*')
    }
  }
  return [...out.values()]
}

