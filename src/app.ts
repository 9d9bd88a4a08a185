// Wires the service together from a Config: route source -> registry -> processor -> gRPC stream loop,
// with the operator HTTP endpoints beside it. Start and stop are the only lifecycle.
import type { KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from './config/kubeconfig.ts';
import { conventionsOf } from './config/load.ts';
import type { Config } from './config/settings.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { createMetrics, type Metrics } from './observability/metrics.ts';
import type { Tracing } from './observability/tracing.ts';
import type { AccessLogResult } from './protocol/access-log.ts';
import { Answers } from './protocol/answers.ts';
import { FileRouteSource } from './routes/file-source.ts';
import { KubernetesRouteSource } from './routes/kubernetes-source.ts';
import { RouteRegistry } from './routes/registry.ts';
import { RouteScreen } from './routes/screen.ts';
import { UpstreamAddressPolicy } from './routes/upstream-address.ts';
import { sandboxKind } from './sandbox-kinds/index.ts';
import type { SandboxKind } from './sandbox-kinds/kind.ts';
import { GrpcServer } from './server/grpc-server.ts';
import { HttpServer } from './server/http-server.ts';
import { RequestProcessor } from './server/processor.ts';
import { ActivityTracker, unrecordedForAtMostMs } from './activity/tracker.ts';
import { kubernetesActivityWriter } from './activity/writer.ts';
import { WakeCoordinator } from './wake/coordinator.ts';
import { KubernetesResumer } from './wake/resumer.ts';
import type { DestinationStream } from 'pino';
import { readFileSync } from 'node:fs';
import { discoverUntilLoaded, keysFromFile } from './auth/traffic-token-source.ts';
import { leaseIdentity, leaseNamespace } from './idle/lease-identity.ts';
import { LeaseElector } from './idle/lease-elector.ts';
import { IdleSuspender } from './idle/suspender.ts';
import { kubernetesSuspendWriter } from './idle/writer.ts';
import { TrafficTokenVerifier } from './auth/traffic-token-verifier.ts';
import { ScopedTokenAuthorizer } from './auth/scoped-token.ts';
import { kubernetesReviewer, TokenReviewAuthorizer } from './auth/token-review.ts';
import type { RouterAuthorizer } from './core/router-authz.ts';

/**
 * How long the last spans may take to reach the collector at stop. Within the second the command allows
 * past drain + grace (cli.ts STOP_MARGIN_MS), with room for the closes and log lines after it.
 */
export const TRACING_STOP_MS = 500;

interface RouteSource {
  stop(): Promise<void>;
}

export interface Listening {
  readonly grpcPort: number | undefined;
  readonly grpcSocket: string | undefined;
  readonly httpPort: number;
}

export class App {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: RouteRegistry;
  readonly metrics: Metrics;
  readonly #addressPolicy: UpstreamAddressPolicy;
  /** The enabled Sandbox families, one instance each (routes point at them). */
  readonly #kinds: readonly SandboxKind[];
  readonly #grpc: GrpcServer;
  readonly #http: HttpServer;
  /** The wake coordinator, when waking is on (Kubernetes routes and --wake). */
  readonly wakes: WakeCoordinator | undefined;
  /** Keeps sandboxes in use awake, when --activity is on (Kubernetes routes). */
  readonly activity: ActivityTracker | undefined;
  readonly #kubeConfig: KubeConfig | undefined;
  /** Checks traffic access tokens (JWTs), when keys are configured (a JWKS file or OIDC discovery). */
  readonly trafficTokens: TrafficTokenVerifier | undefined;
  /** OpenTelemetry spans, when --tracing-endpoint is set. */
  readonly tracing: Tracing | undefined;
  readonly #stopDiscovery = new AbortController();
  /** Campaigns for the idle suspender's Lease, when agent-sandbox idle suspension is on. */
  readonly #idleElector: LeaseElector | undefined;
  #sources: RouteSource[] = [];
  #stopping = false;
  /** Where the service listens, once started. */
  listening: Listening | undefined;

  /**
   * Builds the App, loading OpenTelemetry's SDK and exporter only when tracing is on: off, their modules
   * are never evaluated, so they cost start-up nothing.
   */
  static async create(config: Config, logDestination?: DestinationStream): Promise<App> {
    const sdk = config.tracingEndpoint === '' ? undefined : (await import('./observability/tracing.ts')).Tracing;
    return new App(config, logDestination, sdk);
  }

  /** `tracingSdk`: the Tracing class, required when tracing is on (App.create loads it). */
  constructor(config: Config, logDestination?: DestinationStream, tracingSdk?: typeof Tracing) {
    this.config = config;
    this.logger = createLogger(config.logLevel, logDestination);
    const routeLog = this.logger.child({ component: 'routes' });
    this.registry = new RouteRegistry({
      onConflict: (id, claimants) => {
        if (claimants.length === 0) routeLog.info({ sandboxId: id }, 'sandbox ID claimed by one object again; serving it');
        else {
          routeLog.warn(
            { sandboxId: id, claimants: claimants.map((r) => `${r.namespace}/${r.name}`) },
            'sandbox ID claimed by more than one object; refusing its requests (sandbox_id_conflict) until one remains',
          );
        }
      },
      onListenerError: (error) => routeLog.error({ err: error }, 'a route change listener failed'),
    });
    this.metrics = createMetrics(() => this.registry.countByState(), {
      routeConflicts: () => this.registry.conflicts,
      keptAwake: () => this.activity?.keptAwake ?? 0,
      ready: () => this.#notReadyReason() === undefined,
      limits: { maxStreams: config.maxStreams, maxWaiters: config.maxWaiters, wakeTimeoutSeconds: config.wakeTimeout / 1000 },
    });
    this.registry.subscribe(() => this.metrics.routeChanges.inc());
    if (config.tracingEndpoint !== '') {
      if (tracingSdk === undefined)
        throw new Error('tracing is on (--tracing-endpoint): build the App with App.create, which loads its SDK');
      this.tracing = new tracingSdk({ endpoint: config.tracingEndpoint, sampleRatio: config.tracingSampleRatio, logger: this.logger });
    }
    this.#addressPolicy = new UpstreamAddressPolicy(config.upstreamCidrs);
    this.#kinds = config.sandboxKind.map((name) =>
      sandboxKind(name, {
        pauseFloorSeconds: config.minPauseTimeout / 1000,
        idleTimeoutSeconds: config.idleTimeout / 1000,
        idleNamespaces: config.idleNamespaces,
      }),
    );
    const conventions = conventionsOf(config);
    const agentSandbox = conventions.includes('agent-sandbox');
    const answers = new Answers({
      metadataNamespace: config.metadataNamespace,
      metadataKey: config.metadataKey,
      // The traffic access token is a credential for this gateway, never for the sandbox: always removed.
      strippedHeaders: [...new Set([...config.stripHeaders, config.trafficTokenHeader])],
      defaultPort: config.e2bDefaultPort,
      // agent-sandbox's router consumes Authorization whatever its authz mode.
      ...(agentSandbox ? { agentSandbox: { strippedHeaders: ['authorization'] } } : {}),
    });
    if (config.trafficTokenJwksFile !== '' || config.trafficTokenDiscoveryUrl !== '') {
      this.trafficTokens = new TrafficTokenVerifier({
        audience: config.trafficTokenAudience,
        clockSkewSeconds: config.trafficTokenClockSkew / 1000,
      });
      if (config.trafficTokenJwksFile !== '') {
        this.trafficTokens.publish(keysFromFile(config.trafficTokenJwksFile, config.trafficTokenIssuer));
      }
    }
    if (config.routeSource === 'kubernetes') {
      // Refuses, naming the setting, a configuration that could never connect (issue 28).
      this.#kubeConfig = loadKubeConfig(config.kubeconfig, { env: process.env });
    }
    // Only Kubernetes sandboxes can be resumed; file routes have no controller to wake them.
    if (config.wake && this.#kubeConfig !== undefined) {
      this.wakes = new WakeCoordinator({
        registry: this.registry,
        resumer: new KubernetesResumer(this.#kubeConfig, (outcome) => this.metrics.resumePatches.inc({ outcome }), this.registry),
        metrics: this.metrics,
        logger: this.logger,
        ...(this.tracing === undefined ? {} : { tracer: this.tracing }),
        options: {
          timeoutMs: config.wakeTimeout,
          maxHoldMs: config.maxMessageTimeout,
          maxWaitersPerSandbox: config.maxWaitersPerSandbox,
          maxWaiters: config.maxWaiters,
        },
      });
    }
    if (config.activity && this.#kubeConfig !== undefined) {
      this.activity = new ActivityTracker(
        { fraction: config.activityFraction, minIntervalMs: config.activityMinInterval },
        {
          // Each route's own kind says whether it has a timer to push, and how.
          timerOf: (route) => route.kind?.activityTimer(route),
          latest: (uid) => this.registry.byUid(uid),
          write: kubernetesActivityWriter(this.#kubeConfig),
          onWrite: (outcome, remainingMs, error) => {
            this.metrics.activityWrites.inc({ outcome });
            this.metrics.activityRemainingSeconds.observe(Math.max(0, remainingMs) / 1000);
            if (error !== undefined) this.logger.warn({ err: (error as Error).message }, 'recording sandbox activity failed');
            else
              this.logger.debug(
                { remainingMs, outcome },
                outcome === 'applied' ? 'sandbox activity recorded' : 'sandbox activity not recorded: it changed since',
              );
          },
        },
      );
    }
    const routerAuthz = this.#routerAuthorizer(config);
    this.#idleElector = this.#idleSuspension();
    const processor = new RequestProcessor({
      routes: this.registry,
      answers,
      metrics: this.metrics,
      logger: this.logger,
      ...(this.wakes === undefined ? {} : { waker: this.wakes }),
      ...(this.activity === undefined ? {} : { activity: this.activity }),
      ...(this.trafficTokens === undefined ? {} : { trafficTokens: this.trafficTokens }),
      ...(routerAuthz === undefined
        ? {}
        : { routerAuthz, onRouterAuthz: (decision: 'allow' | 'deny') => this.metrics.authzDecisions.inc({ decision }) }),
      ...(this.tracing === undefined ? {} : { tracing: this.tracing }),
      options: {
        names: {
          sandboxIdHeader: config.sandboxIdHeader,
          sandboxPortHeader: config.sandboxPortHeader,
          agentSandbox,
          trafficTokenHeader: config.trafficTokenHeader,
        },
        identify: {
          domains: config.domains,
          kruisePath: config.kruisePathRouting,
          defaultPort: config.e2bDefaultPort,
          conventions,
          agentSandbox: {
            defaultNamespace: config.agentSandboxDefaultNamespace,
            defaultPort: config.agentSandboxDefaultPort,
            namespaces: config.agentSandboxNamespaces,
            pathPrefix: config.agentSandboxPathPrefix,
            podIPs: this.#addressPolicy,
          },
        },
        decide: {
          wakeEnabled: this.wakes !== undefined,
          unnamed: config.unnamedRequests,
          accessTokenCheck: config.accessTokenCheck,
          // agent-sandbox's router answers GET /healthz on its proxy port (Gateway health checks).
          ...(agentSandbox ? { healthPath: '/healthz' } : {}),
        },
      },
    });
    const activity = this.activity;
    this.#grpc = new GrpcServer({
      processor,
      answers,
      logger: this.logger,
      metrics: this.metrics,
      maxStreams: config.maxStreams,
      limits: {
        bufferBytes: config.grpcConnectionBuffer,
        serverBufferBytes: config.grpcBuffer,
        maxConnections: config.grpcMaxConnections,
        firstMessageTimeoutMs: config.grpcFirstMessageTimeout,
        emptyStreamsPerSecond: config.grpcEmptyStreamLimit,
        keepaliveIntervalMs: config.grpcKeepaliveInterval,
        keepaliveTimeoutMs: config.grpcKeepaliveTimeout,
        maxExtProcMessageBytes: config.grpcMaxExtProcMessage,
        maxAccessLogMessageBytes: config.grpcMaxAccessLogMessage,
      },
      ...(activity === undefined
        ? {}
        : {
            onActivity: (fact) => {
              // Credit the very object the request went to, and only while it still holds that ID.
              const route = this.registry.byUid(fact.uid);
              const known = route !== undefined && route.id === fact.sandboxId;
              const result: AccessLogResult = known ? 'activity' : 'unknown';
              this.metrics.accessLogEntries.inc({ result });
              if (known) activity.note(route);
            },
          }),
    });
    this.#http = new HttpServer({ metrics: this.metrics.registry, notReadyReason: () => this.#notReadyReason() });
  }

  /** agent-sandbox's router authorization, when --agent-sandbox-authz-mode is not allow-all. */
  #routerAuthorizer(config: Config): RouterAuthorizer | undefined {
    switch (config.agentSandboxAuthzMode) {
      case 'allow-all':
        return undefined;
      case 'scoped-token':
        return ScopedTokenAuthorizer.fromFile(config.agentSandboxAuthzScopedTokenSecretFile);
      case 'tokenreview':
        return new TokenReviewAuthorizer(
          {
            ttlMs: config.agentSandboxAuthzTokenreviewTtl,
            cacheSize: config.agentSandboxAuthzTokenreviewCacheSize,
            requireToken: config.agentSandboxAuthzTokenreviewRequireToken,
            audiences: config.agentSandboxAuthzTokenreviewAudiences,
          },
          kubernetesReviewer(this.#kubeConfig as KubeConfig),
          (result) => this.metrics.tokenReviews.inc({ result }),
        );
    }
  }

  async start(): Promise<Listening> {
    const c = this.config;
    const httpPort = await this.#http.listen(c.httpHost, c.httpPort);
    const tls = c.grpcTlsCert === '' ? undefined : { cert: c.grpcTlsCert, key: c.grpcTlsKey, clientCa: c.grpcTlsClientCa };
    await this.#grpc.listen({
      tls,
      tcp: c.grpcTcp,
      host: c.grpcHost,
      port: c.grpcPort,
      socket: c.grpcSocket,
      socketMode: c.grpcSocketMode,
      untrustedResetLimit: c.grpcStreamResetLimit,
    });
    this.#startTrafficTokenDiscovery();
    await this.#startSources();
    this.#idleElector?.start();
    const listening = { grpcPort: this.#grpc.tcpPort, grpcSocket: c.grpcSocket || undefined, httpPort };
    this.listening = listening;
    this.logger.info(listening, 'sandbox-extproc listening');
    return listening;
  }

  /** Graceful stop: not ready at once, open streams get up to shutdownGrace, then everything closes. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.logger.info({ drainMs: this.config.drainDelay, graceMs: this.config.shutdownGrace }, 'shutting down');
    if (this.config.drainDelay > 0) {
      // Tell health checkers first, keep serving while they notice, then stop taking streams.
      this.#grpc.setServing(false);
      await new Promise((resolve) => setTimeout(resolve, this.config.drainDelay));
    }
    await this.#grpc.shutdown(this.config.shutdownGrace, () => this.wakes?.close());
    this.wakes?.close();
    this.activity?.stop();
    await this.#idleElector?.stop();
    this.#stopDiscovery.abort();
    await Promise.all(this.#sources.map((source) => source.stop()));
    await this.#http.close();
    // Spans still buffered leave before the process does.
    // Bounded: a collector that hangs must not keep the process from exiting (the command's stop deadline
    // leaves a second past the grace for everything after the streams).
    await this.tracing?.shutdown(TRACING_STOP_MS).then(
      (sent) => {
        if (!sent) this.logger.warn({ limitMs: TRACING_STOP_MS }, 'the last spans were not sent in time; dropped');
      },
      (error: unknown) => this.logger.warn({ err: (error as Error).message }, 'sending the last spans failed'),
    );
    this.logger.info('stopped');
  }

  /**
   * agent-sandbox's idle suspension: the suspender sweeps on the one replica holding the Lease. It reads
   * the activity record the activity writers keep, so without them (--activity false) it would suspend
   * sandboxes in use: then it does not run.
   */
  #idleSuspension(): LeaseElector | undefined {
    const c = this.config;
    if (!c.idleSuspension || this.#kubeConfig === undefined || !this.#kinds.some((k) => k.idleSuspendPatch !== undefined)) return undefined;
    const log = this.logger.child({ component: 'idle' });
    if (this.activity === undefined) {
      log.warn('idle suspension is off: it reads the activity record, which --activity false does not keep');
      return undefined;
    }
    const activity = this.activity;
    const suspender = new IdleSuspender({
      registry: this.registry,
      write: kubernetesSuspendWriter(this.#kubeConfig),
      // Never while this replica holds a request for it, has its activity waiting to be written, or
      // failed to record activity within its idle timeout (an API server back from an outage, RBAC not
      // yet warm: the object's record is older than the truth).
      busy: (route) => this.wakes?.waking(route) === true || activity.pending(route.uid) || activity.unrecorded(route.uid, route.idleMs),
      metrics: {
        onSuspend: (outcome) => this.metrics.suspensions.inc({ reason: 'idle', outcome }),
        setIdle: (count) => this.metrics.idleSandboxes.set(count),
        onSweep: (seconds) => this.metrics.idleSweepSeconds.observe(seconds),
      },
      logger: this.logger,
      options: {
        sweepIntervalMs: c.idleSweepInterval,
        perSecond: c.idleSuspensionsPerSecond,
        unrecordedMs: (idleMs) => unrecordedForAtMostMs({ fraction: c.activityFraction, minIntervalMs: c.activityMinInterval }, idleMs),
      },
    });
    this.metrics.idleEnabled.set(1);
    return new LeaseElector(
      this.#kubeConfig,
      { namespace: leaseNamespace(c.leaseNamespace), name: c.leaseName, identity: leaseIdentity(), durationMs: c.leaseDuration },
      {
        onStartedLeading: (signal) => {
          this.metrics.idleLeader.set(1);
          signal.addEventListener('abort', () => this.metrics.idleLeader.set(0), { once: true });
          suspender.lead(signal);
        },
      },
      this.logger,
    );
  }

  #notReadyReason(): string | undefined {
    if (this.#stopping) return 'shutting down';
    if (!this.registry.ready) return 'routes not loaded yet';
    // As OpenKruise's gateway: a replica that cannot check traffic access tokens yet is not ready.
    if (this.trafficTokens?.ready === false) return 'traffic access token keys not loaded yet';
    return undefined;
  }

  /** gRPC health says SERVING once the routes are loaded and, when configured, the token keys. */
  #serveWhenReady(): void {
    if (this.#notReadyReason() === undefined) this.#grpc.setServing(true);
  }

  #startTrafficTokenDiscovery(): void {
    const c = this.config;
    const verifier = this.trafficTokens;
    if (verifier === undefined || c.trafficTokenDiscoveryUrl === '') return;
    const ca = c.trafficTokenCaFile === '' ? undefined : readFileSync(c.trafficTokenCaFile, 'utf8');
    void discoverUntilLoaded(
      { discoveryUrl: c.trafficTokenDiscoveryUrl, ca, issuer: c.trafficTokenIssuer },
      (keys) => {
        verifier.publish(keys);
        this.#serveWhenReady();
      },
      this.logger.child({ component: 'traffic-tokens' }),
      this.#stopDiscovery.signal,
    );
  }

  async #startSources(): Promise<void> {
    const c = this.config;
    const onReady = () => this.#serveWhenReady();
    if (c.routeSource === 'file') {
      const source = new FileRouteSource(c.routesFile, this.registry, this.#addressPolicy, this.logger);
      await source.start();
      this.#sources.push(source);
      onReady();
      return;
    }
    // One watch per kind; the table is ready (and the service serving) once every kind has listed.
    let unsynced = this.#kinds.length;
    const screen = new RouteScreen(this.#addressPolicy, this.logger.child({ component: 'routes' }), () =>
      this.metrics.addressesRefused.inc(),
    );
    for (const kind of this.#kinds) {
      const source = new KubernetesRouteSource({
        kubeConfig: this.#kubeConfig as KubeConfig,
        kind,
        namespaces: c.namespaces,
        labelSelector: c.labelSelector,
        resyncIntervalMs: c.resyncInterval,
        watchIdleTimeoutMs: c.watchIdleTimeout,
        registry: this.registry,
        screen,
        logger: this.logger,
        metrics: this.metrics,
        onSynced: () => {
          unsynced -= 1;
          if (unsynced > 0) return;
          this.registry.markReady();
          onReady();
          this.logger.info(
            { routes: this.registry.size, kinds: this.#kinds.map((k) => `${k.group}/${k.version}`) },
            'routes synced from Kubernetes',
          );
        },
      });
      source.start();
      this.#sources.push(source);
    }
  }
}
