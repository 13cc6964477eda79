// Talking to the cityfix API: the bearer token (kept in sessionStorage, so it ends with
// the browser tab) and JSON requests that carry it.

const TOKEN = "cityfix.token";
const ROLE = "cityfix.role";
const USER = "cityfix.user";

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

function claims(token: string): Record<string, unknown> {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

export const auth = {
  get token(): string | null {
    const t = sessionStorage.getItem(TOKEN);
    if (!t) return null;
    const exp = Number(claims(t).exp ?? 0);
    if (exp && exp * 1000 < Date.now()) {
      this.logout();
      return null;
    }
    return t;
  },
  get role(): string {
    return sessionStorage.getItem(ROLE) ?? "viewer";
  },
  get username(): string {
    return sessionStorage.getItem(USER) ?? "";
  },
  /** Whether the signed-in user may take dispatcher actions. */
  get canAct(): boolean {
    return this.role === "dispatcher" || this.role === "admin";
  },
  async login(username: string, password: string): Promise<void> {
    const body = new URLSearchParams({ username, password, grant_type: "password" });
    const res = await fetch("/api/token", { method: "POST", body });
    if (!res.ok) throw new ApiError(res.status, await problem(res));
    const doc = (await res.json()) as { access_token: string; role?: string };
    sessionStorage.setItem(TOKEN, doc.access_token);
    sessionStorage.setItem(ROLE, String(doc.role ?? claims(doc.access_token).role ?? "viewer"));
    sessionStorage.setItem(USER, String(claims(doc.access_token).sub ?? username));
  },
  logout(): void {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(ROLE);
    sessionStorage.removeItem(USER);
  },
};

async function problem(res: Response): Promise<string> {
  try {
    const doc = (await res.clone().json()) as unknown;
    if (doc && typeof doc === "object" && "detail" in doc) {
      const d = (doc as { detail: unknown }).detail;
      return typeof d === "string" ? d : JSON.stringify(d);
    }
    if (Array.isArray(doc) && doc[0]?.description) return String(doc[0].description);
  } catch {
    /* not JSON */
  }
  return `${res.status} ${res.statusText}`;
}

/** A JSON request to the dispatcher API with the bearer token. */
export async function api<T>(path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
  const headers = new Headers(init.headers);
  const token = auth.token;
  if (token) headers.set("Authorization", `Bearer ${token}`);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(init.json);
  }
  const res = await fetch(path, { ...init, headers, body });
  if (res.status === 401) {
    auth.logout();
    window.dispatchEvent(new Event("cityfix:unauthorized"));
  }
  if (!res.ok) throw new ApiError(res.status, await problem(res));
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** A public JSON request (Open311 reads need no token). */
export async function publicJson<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, init);
  if (!res.ok) throw new ApiError(res.status, await problem(res));
  return (await res.json()) as T;
}

export { problem };
