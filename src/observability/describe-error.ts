// One line for a failed Kubernetes API call: HTTP status, message and network cause (ECONNREFUSED...).
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown; statusCode?: unknown }).code ?? (error as { statusCode?: unknown }).statusCode;
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return [code === undefined ? undefined : `HTTP ${String(code)}`, error.message, cause?.code ?? cause?.message]
      .filter(Boolean)
      .join(': ');
  }
  return String(error);
}
