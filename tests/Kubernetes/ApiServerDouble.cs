using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Adaptive.Tests.Kubernetes;

/// <summary>
/// An in-process stand-in for kube-apiserver, reached over real HTTP (KubernetesClient talks to it as to a
/// cluster). It keeps the API's semantics for what the operator uses: namespaced CRUD and cluster-wide
/// lists, one resourceVersion sequence, watches that resume from a resourceVersion and answer 410 Gone when
/// it has been compacted, merge, strategic-merge (as merge) and apply patches, the status subresource
/// (spec and status written separately, generation bumped on spec changes), 409 on a stale
/// resourceVersion, and garbage collection of dependents through ownerReferences. Faults can be injected:
/// failed requests, dropped watches, slow answers.
/// </summary>
public sealed class ApiServerDouble : IAsyncDisposable
{
    sealed record Kind(string Group, string Version, string Plural, string Name, bool HasStatus)
    {
        public string ApiVersion => Group == "" ? Version : $"{Group}/{Version}";
    }

    sealed record Event(long ResourceVersion, string Type, Kind Kind, JsonObject Object);

    static readonly Kind[] Kinds =
    [
        new("apps", "v1", "deployments", "Deployment", HasStatus: true),
        new("", "v1", "services", "Service", HasStatus: true),
        new("", "v1", "configmaps", "ConfigMap", HasStatus: false),
        new("", "v1", "events", "Event", HasStatus: false),
        new("events.k8s.io", "v1", "events", "Event", HasStatus: false),
        new("coordination.k8s.io", "v1", "leases", "Lease", HasStatus: false),
        new("adaptive.dev", "v1alpha1", "inferencepipelines", "InferencePipeline", HasStatus: true),
    ];

    readonly WebApplication app;
    readonly Lock gate = new();
    readonly Dictionary<(Kind Kind, string Namespace, string Name), JsonObject> objects = [];
    readonly List<Event> history = [];
    readonly List<(Kind Kind, string? Namespace, Channel<Event> Events)> watches = [];
    long resourceVersion = 1000;
    long compactedThrough;
    int failuresLeft;
    int failureStatus;

    public Uri Address { get; }
    /// <summary>
    /// Stands in for the Deployment controller and kubelets: this long after a Deployment's spec is
    /// written, its status says all its replicas are ready. Null: nothing ever becomes ready.
    /// </summary>
    public TimeSpan? PodsReadyAfter { get; set; } = TimeSpan.Zero;

    /// <summary>Added to every answer; the slow-API-server fault.</summary>
    public TimeSpan Latency { get; set; }

    ApiServerDouble(WebApplication app)
    {
        this.app = app;
        Address = new Uri(app.Urls.First());
    }

    public static async Task<ApiServerDouble> Start()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        ApiServerDouble? server = null;
        app.Run(context => server!.Handle(context));
        await app.StartAsync();
        server = new ApiServerDouble(app);
        return server;
    }

    // ---- faults and inspection for tests ----

    /// <summary>The next <paramref name="count"/> requests fail with <paramref name="status"/>.</summary>
    public void FailNext(int count, int status = 500)
    {
        lock (gate) (failuresLeft, failureStatus) = (count, status);
    }

    /// <summary>Ends every open watch stream, as an API server restart or a load balancer timeout does.</summary>
    public void DropWatches()
    {
        lock (gate)
        {
            foreach (var watch in watches) watch.Events.Writer.TryComplete();
            watches.Clear();
        }
    }

    /// <summary>
    /// Forgets the event history, as etcd compaction does: a watch resuming from any version up to now gets
    /// 410 Gone. The version moves on by one (as other writes in the cluster would move it), so that a
    /// fresh list hands out a version that can be watched.
    /// </summary>
    public void Compact()
    {
        lock (gate)
        {
            compactedThrough = resourceVersion++;
            history.Clear();
        }
    }

    /// <summary>The stored objects of a kind (by plural) in a namespace, as JSON.</summary>
    public IReadOnlyList<JsonObject> List(string plural, string @namespace)
    {
        lock (gate)
            return [.. objects.Where(o => o.Key.Kind.Plural == plural && o.Key.Namespace == @namespace).Select(o => (JsonObject)o.Value.DeepClone())];
    }

    /// <summary>Every change recorded for a kind (by plural), oldest first: what a watch from the start would see.</summary>
    public IReadOnlyList<(string Type, JsonObject Object)> Changes(string plural)
    {
        lock (gate) return [.. history.Where(e => e.Kind.Plural == plural).Select(e => (e.Type, (JsonObject)e.Object.DeepClone()))];
    }

    public int OpenWatches
    {
        get { lock (gate) return watches.Count; }
    }

    // ---- HTTP ----

    async Task Handle(HttpContext context)
    {
        if (Latency > TimeSpan.Zero) await Task.Delay(Latency);
        int injected;
        lock (gate)
        {
            injected = failuresLeft > 0 ? failureStatus : 0;
            if (failuresLeft > 0) failuresLeft--;
        }
        if (injected != 0)
        {
            await Status(context, injected, "InternalError", "injected failure");
            return;
        }
        var segments = context.Request.Path.Value!.Trim('/').Split('/');
        if (!TryRoute(segments, out var kind, out string? ns, out string? name, out bool status))
        {
            await Status(context, 404, "NotFound", $"the server could not find the requested resource ({context.Request.Path})");
            return;
        }
        string method = context.Request.Method;
        try
        {
            await Serve(context, method, kind, ns, name, status);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or BadHttpRequestException)
        {
            await Status(context, 400, "BadRequest", e.Message);
        }
    }

    async Task Serve(HttpContext context, string method, Kind kind, string? ns, string? name, bool status)
    {
        if (name is null && method == "GET" && IsWatch(context.Request)) await Watch(context, kind, ns);
        else if (name is null && method == "GET") await Write(context, 200, ListObjects(kind, ns, context.Request.Query["labelSelector"]));
        else if (name is null && method == "POST" && ns is not null) await Respond(context, Create(kind, ns, await ReadJson(context)));
        else if (name is not null && ns is not null && method == "GET") await Respond(context, Get(kind, ns, name, status));
        else if (name is not null && ns is not null && method == "PUT") await Respond(context, Replace(kind, ns, name, await ReadJson(context), status));
        else if (name is not null && ns is not null && method == "PATCH") await Respond(context, Patch(kind, ns, name, await ReadJson(context), context.Request.ContentType ?? "", status));
        else if (name is not null && ns is not null && method == "DELETE") await Respond(context, Delete(kind, ns, name));
        else await Status(context, 405, "MethodNotAllowed", $"{method} is not supported on {context.Request.Path}");
    }

    static bool IsWatch(HttpRequest request) => request.Query["watch"] is var w && (w == "true" || w == "1");

    static bool TryRoute(string[] s, out Kind kind, out string? ns, out string? name, out bool status)
    {
        (kind, ns, name, status) = (null!, null, null, false);
        int rest;
        string group, version;
        if (s.Length >= 2 && s[0] == "api") (group, version, rest) = ("", s[1], 2);
        else if (s.Length >= 3 && s[0] == "apis") (group, version, rest) = (s[1], s[2], 3);
        else return false;
        var tail = s[rest..];
        if (tail.Length >= 3 && tail[0] == "namespaces") (ns, tail) = (tail[1], tail[2..]);
        if (tail.Length == 0 || tail.Length > 3) return false;
        string plural = tail[0];
        var found = Kinds.FirstOrDefault(k => k.Group == group && k.Version == version && k.Plural == plural);
        if (found is null) return false;
        kind = found;
        if (tail.Length >= 2) name = tail[1];
        if (tail.Length == 3)
        {
            if (tail[2] != "status" || !found.HasStatus) return false;
            status = true;
        }
        return ns is not null || name is null;
    }

    // ---- verbs: each returns (status code, body) ----

    sealed record Answer(int Code, JsonObject Body);

    static Answer Failure(int code, string reason, string message) => new(code, new JsonObject
    {
        ["kind"] = "Status", ["apiVersion"] = "v1", ["status"] = "Failure", ["reason"] = reason, ["message"] = message, ["code"] = code,
    });

    JsonObject ListObjects(Kind kind, string? ns, string? labelSelector)
    {
        var selector = (labelSelector ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=', 2)).ToList();
        lock (gate)
        {
            var items = objects.Where(o => o.Key.Kind == kind && (ns is null || o.Key.Namespace == ns))
                .Where(o => selector.All(p => o.Value["metadata"]?["labels"]?[p[0]]?.GetValue<string>() == p.ElementAtOrDefault(1)))
                .OrderBy(o => o.Key.Namespace).ThenBy(o => o.Key.Name)
                .Select(o => o.Value.DeepClone()).ToArray();
            return new JsonObject
            {
                ["apiVersion"] = kind.ApiVersion, ["kind"] = kind.Name + "List",
                ["metadata"] = new JsonObject { ["resourceVersion"] = resourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                ["items"] = new JsonArray(items),
            };
        }
    }

    Answer Get(Kind kind, string ns, string name, bool status)
    {
        lock (gate)
            return objects.TryGetValue((kind, ns, name), out var found)
                ? new Answer(200, (JsonObject)found.DeepClone())
                : NotFound(kind, name);
    }

    static Answer NotFound(Kind kind, string name) => Failure(404, "NotFound", $"{kind.Plural} \"{name}\" not found");

    Answer Create(Kind kind, string ns, JsonObject body)
    {
        var metadata = body["metadata"] as JsonObject ?? [];
        string? name = metadata["name"]?.GetValue<string>();
        if (string.IsNullOrEmpty(name)) return Failure(422, "Invalid", $"{kind.Name}: metadata.name: Required value");
        lock (gate)
        {
            if (objects.ContainsKey((kind, ns, name))) return Failure(409, "AlreadyExists", $"{kind.Plural} \"{name}\" already exists");
            body["apiVersion"] = kind.ApiVersion;
            body["kind"] = kind.Name;
            metadata["namespace"] = ns;
            metadata["uid"] = Guid.NewGuid().ToString();
            metadata["creationTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);
            metadata["generation"] = 1L;
            body["metadata"] = metadata;
            if (kind.HasStatus) body.Remove("status"); // written through the status subresource only
            Store(kind, ns, name, body, "ADDED");
            return new Answer(201, (JsonObject)body.DeepClone());
        }
    }

    Answer Replace(Kind kind, string ns, string name, JsonObject body, bool status)
    {
        lock (gate)
        {
            if (!objects.TryGetValue((kind, ns, name), out var current)) return NotFound(kind, name);
            string? expected = body["metadata"]?["resourceVersion"]?.GetValue<string>();
            if (expected is not null && expected != current["metadata"]!["resourceVersion"]!.GetValue<string>())
                return Failure(409, "Conflict", $"Operation cannot be fulfilled on {kind.Plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again");
            return new Answer(200, Write(kind, ns, name, current, body, status));
        }
    }

    Answer Patch(Kind kind, string ns, string name, JsonObject patch, string contentType, bool status)
    {
        bool apply = contentType.StartsWith("application/apply-patch", StringComparison.Ordinal);
        if (!apply && !contentType.StartsWith("application/merge-patch+json", StringComparison.Ordinal)
            && !contentType.StartsWith("application/strategic-merge-patch+json", StringComparison.Ordinal))
            return Failure(415, "UnsupportedMediaType", $"the double does not support patches of type {contentType}");
        lock (gate)
        {
            if (!objects.TryGetValue((kind, ns, name), out var current))
            {
                if (!apply || status) return NotFound(kind, name);
                return Create(kind, ns, patch);
            }
            string? expected = patch["metadata"]?["resourceVersion"]?.GetValue<string>();
            if (expected is not null && expected != current["metadata"]!["resourceVersion"]!.GetValue<string>())
                return Failure(409, "Conflict", $"Operation cannot be fulfilled on {kind.Plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again");
            var merged = (JsonObject)current.DeepClone();
            MergePatch(merged, patch);
            return new Answer(200, Write(kind, ns, name, current, merged, status));
        }
    }

    /// <summary>Writes the spec part or the status part of an object, as the status subresource divides them.</summary>
    JsonObject Write(Kind kind, string ns, string name, JsonObject current, JsonObject body, bool status)
    {
        var next = (JsonObject)current.DeepClone();
        if (status) next["status"] = body["status"]?.DeepClone();
        else
        {
            foreach (var (key, value) in body)
                if (key is not ("metadata" or "status" or "apiVersion" or "kind")) next[key] = value?.DeepClone();
            foreach (var key in next.Select(p => p.Key).Where(k => k is not ("metadata" or "status" or "apiVersion" or "kind") && !body.ContainsKey(k)).ToList())
                next.Remove(key);
            if (!kind.HasStatus && body["status"] is { } s) next["status"] = s.DeepClone();
            var metadata = (JsonObject)next["metadata"]!;
            foreach (var field in new[] { "labels", "annotations", "ownerReferences", "finalizers" })
                if (body["metadata"]?[field] is { } value) metadata[field] = value.DeepClone();
            bool specChanged = !JsonNode.DeepEquals(Without(current, "metadata", "status"), Without(next, "metadata", "status"));
            if (specChanged) metadata["generation"] = metadata["generation"]!.GetValue<long>() + 1;
        }
        if (JsonNode.DeepEquals(current, next)) return (JsonObject)current.DeepClone(); // no change, no event
        Store(kind, ns, name, next, "MODIFIED");
        return (JsonObject)next.DeepClone();
    }

    static JsonObject Without(JsonObject o, params string[] keys)
    {
        var copy = (JsonObject)o.DeepClone();
        foreach (var key in keys) copy.Remove(key);
        return copy;
    }

    /// <summary>JSON merge patch (RFC 7386): objects merge, null deletes, anything else replaces.</summary>
    static void MergePatch(JsonObject target, JsonObject patch)
    {
        foreach (var (key, value) in patch)
        {
            if (value is null) target.Remove(key);
            else if (value is JsonObject patchObject && target[key] is JsonObject targetObject) MergePatch(targetObject, patchObject);
            else target[key] = value.DeepClone();
        }
    }

    Answer Delete(Kind kind, string ns, string name)
    {
        lock (gate)
        {
            if (!objects.Remove((kind, ns, name), out var removed)) return NotFound(kind, name);
            Record(kind, removed, "DELETED");
            CollectDependents(removed["metadata"]!["uid"]!.GetValue<string>());
            return new Answer(200, removed);
        }
    }

    bool Orphaned(JsonObject value) =>
        value["metadata"]?["ownerReferences"] is JsonArray { Count: > 0 } owners
        && owners.All(r => !objects.Values.Any(o => o["metadata"]?["uid"]?.GetValue<string>() == r?["uid"]?.GetValue<string>()));

    /// <summary>Background cascading deletion: whatever an owner reference ties to the deleted object goes too.</summary>
    void CollectDependents(string ownerUid)
    {
        var dependents = objects.Where(o => o.Value["metadata"]?["ownerReferences"] is JsonArray owners
            && owners.Any(r => r?["uid"]?.GetValue<string>() == ownerUid)).ToList();
        foreach (var ((kind, ns, name), value) in dependents)
        {
            objects.Remove((kind, ns, name));
            Record(kind, value, "DELETED");
            CollectDependents(value["metadata"]!["uid"]!.GetValue<string>());
        }
    }

    void Store(Kind kind, string ns, string name, JsonObject value, string type)
    {
        value["metadata"]!["resourceVersion"] = (++resourceVersion).ToString(System.Globalization.CultureInfo.InvariantCulture);
        objects[(kind, ns, name)] = value;
        Record(kind, value, type, bump: false);
        if (Orphaned(value))
        {
            // The garbage collector deletes a dependent whose owners are all gone, also one written after them.
            objects.Remove((kind, ns, name));
            Record(kind, value, "DELETED");
            return;
        }
        if (kind.Name == "Deployment" && PodsReadyAfter is { } delay) _ = MarkReady(kind, ns, name, value["metadata"]!["generation"]!.GetValue<long>(), delay);
    }

    async Task MarkReady(Kind kind, string ns, string name, long generation, TimeSpan delay)
    {
        if (delay > TimeSpan.Zero) await Task.Delay(delay);
        lock (gate)
        {
            if (!objects.TryGetValue((kind, ns, name), out var current)) return;
            var metadata = current["metadata"]!;
            long replicas = current["spec"]?["replicas"]?.GetValue<long>() ?? 1;
            var status = new JsonObject
            {
                ["observedGeneration"] = metadata["generation"]!.GetValue<long>(), ["replicas"] = replicas,
                ["readyReplicas"] = replicas, ["availableReplicas"] = replicas, ["updatedReplicas"] = replicas,
            };
            if (JsonNode.DeepEquals(current["status"], status) || metadata["generation"]!.GetValue<long>() != generation) return;
            var next = (JsonObject)current.DeepClone();
            next["status"] = status;
            StoreStatus(kind, ns, name, next);
        }
    }

    void StoreStatus(Kind kind, string ns, string name, JsonObject next)
    {
        next["metadata"]!["resourceVersion"] = (++resourceVersion).ToString(System.Globalization.CultureInfo.InvariantCulture);
        objects[(kind, ns, name)] = next;
        Record(kind, next, "MODIFIED", bump: false);
    }

    void Record(Kind kind, JsonObject value, string type, bool bump = true)
    {
        if (bump) value["metadata"]!["resourceVersion"] = (++resourceVersion).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var recorded = new Event(resourceVersion, type, kind, (JsonObject)value.DeepClone());
        history.Add(recorded);
        string? ns = value["metadata"]?["namespace"]?.GetValue<string>();
        foreach (var watch in watches.Where(w => w.Kind == kind && (w.Namespace is null || w.Namespace == ns)))
            watch.Events.Writer.TryWrite(recorded);
    }

    async Task Watch(HttpContext context, Kind kind, string? ns)
    {
        var channel = Channel.CreateUnbounded<Event>();
        string? from = context.Request.Query["resourceVersion"];
        bool gone = false;
        lock (gate)
        {
            if (string.IsNullOrEmpty(from) || from == "0")
            {
                // Without a resourceVersion a watch starts with the current state, as synthetic ADDED events.
                foreach (var o in objects.Where(o => o.Key.Kind == kind && (ns is null || o.Key.Namespace == ns)))
                    channel.Writer.TryWrite(new Event(resourceVersion, "ADDED", kind, (JsonObject)o.Value.DeepClone()));
            }
            else if (long.Parse(from, System.Globalization.CultureInfo.InvariantCulture) <= compactedThrough) gone = true;
            else
            {
                long since = long.Parse(from, System.Globalization.CultureInfo.InvariantCulture);
                foreach (var e in history.Where(e => e.ResourceVersion > since && e.Kind == kind
                             && (ns is null || e.Object["metadata"]?["namespace"]?.GetValue<string>() == ns)))
                    channel.Writer.TryWrite(e);
            }
            if (!gone) watches.Add((kind, ns, channel));
        }
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        if (gone)
        {
            var status = Failure(410, "Expired", $"too old resource version: {from} ({compactedThrough + 1})").Body;
            await WriteLine(context, new JsonObject { ["type"] = "ERROR", ["object"] = status });
            return;
        }
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        if (int.TryParse(context.Request.Query["timeoutSeconds"], out int seconds)) timeout.CancelAfter(TimeSpan.FromSeconds(seconds));
        await context.Response.Body.FlushAsync(context.RequestAborted);
        try
        {
            await foreach (var e in channel.Reader.ReadAllAsync(timeout.Token))
                await WriteLine(context, new JsonObject { ["type"] = e.Type, ["object"] = e.Object.DeepClone() });
        }
        catch (OperationCanceledException)
        {
            // the client went away or the watch timed out
        }
        finally
        {
            lock (gate) watches.RemoveAll(w => w.Events == channel);
        }
    }

    static async Task WriteLine(HttpContext context, JsonObject line)
    {
        await context.Response.WriteAsync(line.ToJsonString() + "\n");
        await context.Response.Body.FlushAsync();
    }

    static async Task<JsonObject> ReadJson(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body);
        string text = await reader.ReadToEndAsync();
        return JsonNode.Parse(text) as JsonObject ?? throw new BadHttpRequestException("the body is not a JSON object");
    }

    static Task Respond(HttpContext context, Answer answer) => Write(context, answer.Code, answer.Body);

    static Task Status(HttpContext context, int code, string reason, string message) => Respond(context, Failure(code, reason, message));

    static async Task Write(HttpContext context, int code, JsonObject body)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString());
    }

    public async ValueTask DisposeAsync()
    {
        DropWatches();
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
