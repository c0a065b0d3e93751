using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Adaptive.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace Adaptive.Tests.Kubernetes;

/// <summary>
/// An in-process stand-in for kube-apiserver, reached over real HTTPS (KubernetesClient and kubectl talk to it
/// as to a cluster), as strict as the real one where the operator could go wrong:
/// <list type="bullet">
/// <item>TLS with a CA of its own; a bearer token or a client certificate from that CA, else 401.</item>
/// <item>One resourceVersion sequence; watches that resume from a version, answer 410 Gone once it has been
/// compacted, filter by label and field selectors, and send BOOKMARKs when asked.</item>
/// <item>Names, label keys and values validated per kind; custom resources pruned, defaulted and validated
/// against their CRD's schema (422 in the API's Status shape); PUT of a custom resource needs a resourceVersion;
/// 409 on a stale one.</item>
/// <item>Merge, strategic-merge and server-side apply patches, the last with field ownership in managedFields.</item>
/// <item>The status subresource; a generation only for the kinds that keep one, bumped on spec changes.</item>
/// <item>Deletion as a cluster does it: finalizers and deletion timestamps, foreground and orphan propagation,
/// and a garbage collector that removes dependents asynchronously.</item>
/// <item>Discovery, CRDs registering their kinds, and tables with printer columns, for kubectl.</item>
/// </list>
/// It also stands in for kubelets (Deployments turn ready) and injects faults: failed requests, dropped
/// watches, slow answers.
/// </summary>
public sealed partial class ApiServerDouble : IAsyncDisposable
{
    sealed record Event(long ResourceVersion, string Type, ResourceType Kind, JsonObject Object);

    sealed record Watcher(ResourceType Kind, string? Namespace, Selector Selector, Channel<Event> Events);

    readonly WebApplication app;
    readonly Lock gate = new();
    readonly List<ResourceType> types = [.. ResourceType.BuiltIn];
    /// <summary>Every object by kind, namespace ("" for cluster-scoped kinds) and name.</summary>
    readonly Dictionary<(ResourceType Kind, string Namespace, string Name), JsonObject> objects = [];
    readonly List<Event> history = [];
    readonly List<Watcher> watches = [];
    readonly List<string> writes = [];
    readonly CancellationTokenSource stopping = new();
    readonly Task collector;
    long resourceVersion = 1000;
    long compactedThrough;
    /// <summary>The resourceVersion at which the garbage collector last looked at everything and changed nothing.</summary>
    long collectedThrough;
    int failuresLeft;
    int failureStatus;

    public Uri Address { get; }
    public ClusterCredentials Credentials { get; }

    /// <summary>
    /// Stands in for the Deployment controller and kubelets: this long after a Deployment's spec is
    /// written, its status says all its replicas are ready. Null: nothing ever becomes ready.
    /// </summary>
    public TimeSpan? PodsReadyAfter { get; set; } = TimeSpan.Zero;

    /// <summary>Added to every answer; the slow-API-server fault.</summary>
    public TimeSpan Latency { get; set; }

    /// <summary>How often the garbage collector looks for dependents whose owners are gone, as kube-controller-manager's does.</summary>
    public TimeSpan GarbageCollectionPeriod { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How often a watch that allows bookmarks gets one (a real server sends one about every minute).</summary>
    public TimeSpan BookmarkPeriod { get; set; } = TimeSpan.FromSeconds(1);

    ApiServerDouble(WebApplication app, ClusterCredentials credentials)
    {
        this.app = app;
        Credentials = credentials;
        Address = new Uri(app.Urls.First().Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
        collector = CollectGarbage(stopping.Token);
    }

    /// <summary>Starts a double with the project's CRDs installed (as <c>helm install</c> leaves a cluster), unless told not to.</summary>
    public static async Task<ApiServerDouble> Start(bool installCrds = true)
    {
        var credentials = new ClusterCredentials();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.UseHttps(new HttpsConnectionAdapterOptions
        {
            ServerCertificate = credentials.ServerCertificate,
            ClientCertificateMode = ClientCertificateMode.AllowCertificate,
            ClientCertificateValidation = (_, _, _) => true, // checked per request against the cluster's CA, as the API server does
        })));
        var app = builder.Build();
        ApiServerDouble? server = null;
        app.Run(context => server!.Handle(context));
        await app.StartAsync();
        server = new ApiServerDouble(app, credentials);
        if (installCrds)
            foreach (var file in Directory.GetFiles(RepoPaths.Of("crds"), "*.yaml"))
                foreach (var crd in YamlJson.Documents(File.ReadAllText(file)))
                    server.Install(crd);
        return server;
    }

    void Install(JsonObject crd)
    {
        lock (gate)
        {
            var answer = Create(ResourceType.CustomResourceDefinitions, "", crd, new WriteOptions("helm", Strict: true));
            if (answer.Code != 201) throw new InvalidOperationException($"installing a CRD failed: {answer.Body.ToJsonString()}");
        }
    }

    /// <summary>A client configuration with the cluster's token and CA, as a kubeconfig would give.</summary>
    public k8s.KubernetesClientConfiguration ClientConfiguration() => Credentials.Configuration(Address);

    /// <summary>A raw HTTP client that trusts the cluster's CA and sends its token, for requests KubernetesClient cannot make.</summary>
    public HttpClient HttpClient(bool authenticated = true)
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null
            && Credentials.Issued(System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()), ClusterCredentials.ServerAuthentication);
        var http = new HttpClient(handler) { BaseAddress = Address };
        if (authenticated) http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", Credentials.Token);
        return http;
    }

    // ---- faults and inspection for tests ----

    /// <summary>The next <paramref name="count"/> authenticated requests fail with <paramref name="status"/>.</summary>
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

    /// <summary>Writes to the API by verb and path ("PATCH /apis/…"), in order, kept since the start; reads are not kept.</summary>
    public IReadOnlyList<string> Writes
    {
        get { lock (gate) return [.. writes]; }
    }

    public int OpenWatches
    {
        get { lock (gate) return watches.Count; }
    }

    // ---- HTTP ----

    async Task Handle(HttpContext context)
    {
        if (Latency > TimeSpan.Zero) await Task.Delay(Latency);
        if (!await Authenticated(context))
        {
            await Respond(context, Failure(401, "Unauthorized", "Unauthorized"));
            return;
        }
        int injected;
        lock (gate)
        {
            injected = failuresLeft > 0 ? failureStatus : 0;
            if (failuresLeft > 0) failuresLeft--;
        }
        if (injected != 0)
        {
            await Respond(context, Failure(injected, "InternalError", "injected failure"));
            return;
        }
        var segments = context.Request.Path.Value!.Trim('/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (await ServeDiscovery(context, segments)) return;
        if (!TryRoute(segments, out var kind, out string? ns, out string? name, out bool status))
        {
            await Respond(context, Failure(404, "NotFound", "the server could not find the requested resource"));
            return;
        }
        string method = context.Request.Method;
        if (method != "GET") lock (gate) writes.Add($"{method} {context.Request.Path}");
        try
        {
            await Serve(context, method, kind, ns, name, status);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or BadHttpRequestException or FormatException or YamlDotNet.Core.YamlException)
        {
            await Respond(context, Failure(400, "BadRequest", e.Message));
        }
    }

    /// <summary>A bearer token equal to the cluster's, or a client certificate its CA issued.</summary>
    async Task<bool> Authenticated(HttpContext context)
    {
        string? header = context.Request.Headers.Authorization;
        if (header is not null && header.StartsWith("Bearer ", StringComparison.Ordinal))
            return CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(header[7..].Trim()), System.Text.Encoding.UTF8.GetBytes(Credentials.Token));
        var certificate = await context.Connection.GetClientCertificateAsync();
        return certificate is not null && Credentials.Issued(certificate, ClusterCredentials.ClientAuthentication);
    }

    async Task Serve(HttpContext context, string method, ResourceType kind, string? ns, string? name, bool status)
    {
        var query = context.Request.Query;
        // The manager of a write that names none is the client's user agent, as kube-apiserver records it.
        string manager = query["fieldManager"].FirstOrDefault() is { Length: > 0 } m ? m : (context.Request.Headers.UserAgent.ToString().Split('/')[0] is { Length: > 0 } agent ? agent : "unknown");
        var options = new WriteOptions(manager, Strict: query["fieldValidation"] == "Strict");
        if (name is null && method == "GET" && query["watch"] is var w && (w == "true" || w == "1")) await Watch(context, kind, ns);
        else if (name is null && method == "GET")
        {
            var list = ListObjects(kind, ns, Selector.Parse(query["labelSelector"], query["fieldSelector"]));
            await Respond(context, WantsTable(context.Request) ? new Answer(200, Table(kind, list)) : new Answer(200, list));
        }
        else if (name is null && method == "POST") await Respond(context, Create(kind, ns ?? "", await ReadJson(context), options));
        else if (name is not null && method == "GET")
        {
            var answer = Get(kind, ns ?? "", name);
            await Respond(context, answer.Code == 200 && WantsTable(context.Request) ? answer with { Body = Table(kind, List([answer.Body], kind)) } : answer);
        }
        else if (name is not null && method == "PUT") await Respond(context, Replace(kind, ns ?? "", name, await ReadJson(context), status, options));
        else if (name is not null && method == "PATCH")
            await Respond(context, Patch(kind, ns ?? "", name, await ReadJson(context), context.Request.ContentType ?? "", status, options,
                query["force"] == "true", query["fieldManager"].FirstOrDefault()));
        else if (name is not null && method == "DELETE") await Respond(context, Delete(kind, ns ?? "", name, await PropagationPolicy(context)));
        else await Respond(context, Failure(405, "MethodNotAllowed", $"{method} is not supported on {context.Request.Path}"));
    }

    bool TryRoute(string[] s, out ResourceType kind, out string? ns, out string? name, out bool status)
    {
        (kind, ns, name, status) = (null!, null, null, false);
        int rest;
        string group, version;
        if (s.Length >= 2 && s[0] == "api") (group, version, rest) = ("", s[1], 2);
        else if (s.Length >= 3 && s[0] == "apis") (group, version, rest) = (s[1], s[2], 3);
        else return false;
        var tail = s[rest..];
        ResourceType? Find(string plural)
        {
            lock (gate) return types.FirstOrDefault(k => k.Group == group && k.Version == version && k.Plural == plural);
        }
        if (tail.Length >= 3 && tail[0] == "namespaces" && Find(tail[2]) is { Namespaced: true }) (ns, tail) = (tail[1], tail[2..]);
        if (tail.Length is 0 or > 3) return false;
        if (Find(tail[0]) is not { } found || (found.Namespaced == false && ns is not null)) return false;
        kind = found;
        if (tail.Length >= 2) name = tail[1];
        if (tail.Length == 3)
        {
            if (tail[2] != "status" || !found.HasStatus) return false;
            status = true;
        }
        return !found.Namespaced || ns is not null || name is null;
    }

    static async Task<string> PropagationPolicy(HttpContext context)
    {
        if (context.Request.Query["propagationPolicy"].FirstOrDefault() is { Length: > 0 } policy) return policy;
        using var reader = new StreamReader(context.Request.Body);
        string body = await reader.ReadToEndAsync();
        return body.Length > 0 && JsonNode.Parse(body)?["propagationPolicy"]?.GetValue<string>() is { } fromBody ? fromBody : "Background";
    }

    // ---- verbs: each returns (status code, body) ----

    sealed record Answer(int Code, JsonObject Body);

    static Answer Failure(int code, string reason, string message, JsonObject? details = null) => new(code, new JsonObject
    {
        ["kind"] = "Status", ["apiVersion"] = "v1", ["metadata"] = new JsonObject(), ["status"] = "Failure", ["message"] = message, ["reason"] = reason,
        ["details"] = details, ["code"] = code,
    });

    /// <summary>422 Invalid, in the shape kube-apiserver answers: the message lists the field errors, details has each as a cause.</summary>
    static Answer Invalid(ResourceType kind, string name, IReadOnlyList<(string Field, string Reason, string Message)> errors)
    {
        string list = errors.Count == 1 ? errors[0].Message : $"[{string.Join(", ", errors.Select(e => e.Message))}]";
        string qualified = kind.Group == "" ? kind.Kind : $"{kind.Kind}.{kind.Group}";
        return Failure(422, "Invalid", $"{qualified} \"{name}\" is invalid: {list}", new JsonObject
        {
            ["name"] = name, ["group"] = kind.Group, ["kind"] = kind.Kind,
            ["causes"] = new JsonArray([.. errors.Select(e => (JsonNode)new JsonObject { ["reason"] = e.Reason, ["message"] = e.Message, ["field"] = e.Field })]),
        });
    }

    static Answer NotFound(ResourceType kind, string name) =>
        Failure(404, "NotFound", $"{(kind.Group == "" ? kind.Plural : $"{kind.Plural}.{kind.Group}")} \"{name}\" not found",
            new JsonObject { ["name"] = name, ["group"] = kind.Group, ["kind"] = kind.Plural });

    static Answer Conflict(ResourceType kind, string name) =>
        Failure(409, "Conflict", $"Operation cannot be fulfilled on {kind.Plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again");

    static string Version(long version) => version.ToString(CultureInfo.InvariantCulture);

    static string Now() => DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);

    JsonObject ListObjects(ResourceType kind, string? ns, Selector selector)
    {
        lock (gate)
            return List([.. objects.Where(o => o.Key.Kind == kind && (ns is null || o.Key.Namespace == ns) && selector.Matches(o.Value))
                .OrderBy(o => o.Key.Namespace, StringComparer.Ordinal).ThenBy(o => o.Key.Name, StringComparer.Ordinal)
                .Select(o => (JsonObject)o.Value.DeepClone())], kind);
    }

    JsonObject List(IReadOnlyList<JsonObject> items, ResourceType? kind = null) => new()
    {
        ["apiVersion"] = kind?.ApiVersion ?? "v1", ["kind"] = (kind?.Kind ?? "") + "List",
        ["metadata"] = new JsonObject { ["resourceVersion"] = Version(resourceVersion) },
        ["items"] = new JsonArray([.. items]),
    };

    Answer Get(ResourceType kind, string ns, string name)
    {
        lock (gate)
            return objects.TryGetValue((kind, ns, name), out var found) ? new Answer(200, (JsonObject)found.DeepClone()) : NotFound(kind, name);
    }

    /// <param name="Manager">Who writes: the field manager that owns what the write sets.</param>
    /// <param name="Strict">Whether unknown fields are an error (<c>fieldValidation=Strict</c>) rather than dropped.</param>
    sealed record WriteOptions(string Manager, bool Strict);

    Answer Create(ResourceType kind, string ns, JsonObject body, WriteOptions options, bool apply = false, bool force = false)
    {
        var metadata = body["metadata"] as JsonObject ?? [];
        body["metadata"] = metadata;
        if (metadata["name"] is null && metadata["generateName"]?.GetValue<string>() is { Length: > 0 } prefix)
            metadata["name"] = prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))[..5];
        string name = metadata["name"]?.GetValue<string>() ?? "";
        if (name.Length == 0) return Invalid(kind, name, [("metadata.name", "FieldValueRequired", "metadata.name: Required value: name or generateName is required")]);
        lock (gate)
        {
            if (objects.ContainsKey((kind, ns, name)))
                return Failure(409, "AlreadyExists", $"{kind.Plural} \"{name}\" already exists", new JsonObject { ["name"] = name, ["group"] = kind.Group, ["kind"] = kind.Plural });
            body["apiVersion"] = kind.ApiVersion;
            body["kind"] = kind.Kind;
            foreach (var field in new[] { "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "managedFields", "selfLink" }) metadata.Remove(field);
            if (kind.Namespaced) metadata["namespace"] = ns;
            else metadata.Remove("namespace");
            if (kind.HasStatus) body.Remove("status"); // written through the status subresource only
            if (apply)
            {
                var (applied, _) = ServerSideApply.Apply(new JsonObject { ["metadata"] = new JsonObject() }, body, options.Manager, force, kind.Keys, kind.ApiVersion);
                body["metadata"]!["managedFields"] = applied!["metadata"]!["managedFields"]!.DeepClone();
            }
            else ServerSideApply.RecordUpdate(new JsonObject { ["metadata"] = new JsonObject() }, body, options.Manager, kind.Keys, kind.ApiVersion);
            if (Admit(kind, name, body, null, options.Strict) is { } invalid) return invalid;
            metadata["uid"] = Guid.NewGuid().ToString();
            metadata["creationTimestamp"] = Now();
            if (kind.HasGeneration) metadata["generation"] = 1L;
            if (kind == ResourceType.CustomResourceDefinitions && Define(body) is { } refused) return refused;
            Store(kind, ns, name, body, "ADDED");
            return new Answer(201, (JsonObject)body.DeepClone());
        }
    }

    /// <summary>
    /// Checks names, labels and, for custom resources, the schema (pruning and defaulting first); null when
    /// admitted. Under <c>fieldValidation=Strict</c> (kubectl's default) a field the schema does not know is
    /// an error instead of being dropped.
    /// </summary>
    Answer? Admit(ResourceType kind, string name, JsonObject next, JsonObject? current, bool strict)
    {
        var errors = ObjectNames.Check(kind, (JsonObject)next["metadata"]!).Select(e => (Field: e.Split(':')[0], Reason: "FieldValueInvalid", Message: e)).ToList();
        if (kind.Schema is { } schema)
        {
            var (invalid, unknown) = StructuralSchema.Admit(next, schema);
            if (strict && unknown.Count > 0)
                return Failure(400, "BadRequest", $"{kind.Kind} in version \"{kind.Version}\" cannot be handled as a {kind.Kind}: strict decoding error: {string.Join(", ", unknown.Select(u => $"unknown field \"{u}\""))}");
            errors.AddRange(invalid.Select(e => (e.Field, e.Reason, e.Message)));
        }
        if (current?["metadata"]?["deletionTimestamp"] is not null)
        {
            var before = (current["metadata"]!["finalizers"] as JsonArray ?? []).Select(f => f!.GetValue<string>()).ToHashSet();
            if ((next["metadata"]!["finalizers"] as JsonArray ?? []).Any(f => !before.Contains(f!.GetValue<string>())))
                errors.Add(("metadata.finalizers", "FieldValueForbidden", "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted"));
        }
        return errors.Count == 0 ? null : Invalid(kind, name, errors);
    }

    Answer Replace(ResourceType kind, string ns, string name, JsonObject body, bool status, WriteOptions options)
    {
        lock (gate)
        {
            if (!objects.TryGetValue((kind, ns, name), out var current)) return NotFound(kind, name);
            string? expected = body["metadata"]?["resourceVersion"]?.GetValue<string>();
            // Custom resources, like most kinds, may only be replaced knowing the version replaced.
            if (expected is null && kind.IsCustom)
                return Invalid(kind, name, [("metadata.resourceVersion", "FieldValueInvalid", "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")]);
            if (expected is not null && expected != current["metadata"]!["resourceVersion"]!.GetValue<string>()) return Conflict(kind, name);
            return Write(kind, ns, name, current, body, status, options, apply: false);
        }
    }

    Answer Patch(ResourceType kind, string ns, string name, JsonObject patch, string contentType, bool status, WriteOptions options, bool force, string? applyManager)
    {
        bool apply = contentType.StartsWith("application/apply-patch", StringComparison.Ordinal);
        bool strategic = contentType.StartsWith("application/strategic-merge-patch+json", StringComparison.Ordinal);
        if (!apply && !strategic && !contentType.StartsWith("application/merge-patch+json", StringComparison.Ordinal))
            return Failure(415, "UnsupportedMediaType", $"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml");
        if (strategic && kind.IsCustom)
            return Failure(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom resources; use a merge patch or server-side apply");
        if (apply && string.IsNullOrEmpty(applyManager))
            return Failure(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
        lock (gate)
        {
            if (!objects.TryGetValue((kind, ns, name), out var current))
                return apply && !status ? Create(kind, ns, patch, options with { Manager = applyManager! }, apply: true, force) : NotFound(kind, name);
            string? expected = patch["metadata"]?["resourceVersion"]?.GetValue<string>();
            if (expected is not null && expected != current["metadata"]!["resourceVersion"]!.GetValue<string>()) return Conflict(kind, name);
            if (apply)
            {
                var (merged, conflicts) = ServerSideApply.Apply(current, patch, applyManager!, force, kind.Keys, kind.ApiVersion);
                if (merged is null)
                    return Failure(409, "Conflict", $"Apply failed with {conflicts.Count} conflict{(conflicts.Count == 1 ? "" : "s")}: "
                        + string.Join("; ", conflicts.Select(c => $"conflict with \"{c.Manager}\": {c.Field}")));
                return Write(kind, ns, name, current, merged, status, options with { Manager = applyManager! }, apply: true);
            }
            var next = (JsonObject)current.DeepClone();
            if (strategic) ServerSideApply.StrategicMerge(next, patch, kind.Keys);
            else MergePatch(next, patch);
            return Write(kind, ns, name, current, next, status, options, apply: false);
        }
    }

    /// <summary>
    /// Writes the spec part or the status part of an object, as the status subresource divides them; a
    /// finalizer-held object whose last finalizer goes is deleted.
    /// </summary>
    Answer Write(ResourceType kind, string ns, string name, JsonObject current, JsonObject body, bool status, WriteOptions options, bool apply)
    {
        var next = (JsonObject)current.DeepClone();
        if (status) next["status"] = body["status"]?.DeepClone();
        else
        {
            foreach (var (key, value) in body)
                if (key is not ("metadata" or "status" or "apiVersion" or "kind")) next[key] = value?.DeepClone();
            foreach (var key in next.Select(p => p.Key).Where(k => k is not ("metadata" or "status" or "apiVersion" or "kind") && !body.ContainsKey(k)).ToList())
                next.Remove(key);
            if (!kind.HasStatus) next["status"] = body["status"]?.DeepClone();
            if (next["status"] is null) next.Remove("status");
            var metadata = (JsonObject)next["metadata"]!;
            foreach (var field in new[] { "labels", "annotations", "ownerReferences", "finalizers" })
            {
                if (body["metadata"]?[field] is { } value) metadata[field] = value.DeepClone();
                else metadata.Remove(field);
            }
            if (apply) metadata["managedFields"] = body["metadata"]?["managedFields"]?.DeepClone();
            else ServerSideApply.RecordUpdate(current, next, options.Manager, kind.Keys, kind.ApiVersion);
        }
        if (Admit(kind, name, next, current, options.Strict) is { } invalid) return invalid;
        if (kind.HasGeneration && !status && !JsonNode.DeepEquals(Without(current, "metadata", "status"), Without(next, "metadata", "status")))
            next["metadata"]!["generation"] = next["metadata"]!["generation"]!.GetValue<long>() + 1;
        if (JsonNode.DeepEquals(current, next))
            return new Answer(200, (JsonObject)current.DeepClone()); // no change, no event
        if (next["metadata"]!["deletionTimestamp"] is not null && next["metadata"]!["finalizers"] is not JsonArray { Count: > 0 })
        {
            Remove(kind, ns, name);
            return new Answer(200, next);
        }
        Store(kind, ns, name, next, "MODIFIED");
        return new Answer(200, (JsonObject)next.DeepClone());
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

    /// <summary>
    /// Deletes at once an object that nothing holds; one with finalizers, or deleted in the foreground or
    /// orphaning its dependents, gets a deletion timestamp and stays until its finalizers are gone.
    /// Dependents are the garbage collector's, later.
    /// </summary>
    Answer Delete(ResourceType kind, string ns, string name, string propagation)
    {
        if (propagation is not ("Background" or "Foreground" or "Orphan"))
            return Failure(400, "BadRequest", $"DeleteOptions.propagationPolicy: Unsupported value: \"{propagation}\": supported values: \"Foreground\", \"Background\", \"Orphan\"");
        lock (gate)
        {
            if (!objects.TryGetValue((kind, ns, name), out var current)) return NotFound(kind, name);
            var next = (JsonObject)current.DeepClone();
            var metadata = (JsonObject)next["metadata"]!;
            var finalizers = metadata["finalizers"] as JsonArray ?? [];
            string? added = propagation switch { "Foreground" => "foregroundDeletion", "Orphan" => "orphan", _ => null };
            if (added is not null && !finalizers.Any(f => f!.GetValue<string>() == added)) finalizers.Add(added);
            if (finalizers.Count == 0)
            {
                Remove(kind, ns, name);
                return new Answer(200, current);
            }
            metadata["finalizers"] = finalizers;
            metadata["deletionTimestamp"] ??= Now();
            metadata["deletionGracePeriodSeconds"] ??= 0L;
            if (!JsonNode.DeepEquals(current, next)) Store(kind, ns, name, next, "MODIFIED");
            return new Answer(200, (JsonObject)next.DeepClone());
        }
    }

    void Remove(ResourceType kind, string ns, string name)
    {
        if (!objects.Remove((kind, ns, name), out var removed)) return;
        Record(kind, removed, "DELETED");
        if (kind == ResourceType.CustomResourceDefinitions) Undefine(removed);
    }

    /// <summary>A CRD registers its kinds (and is Established at once); its name must be plural.group.</summary>
    Answer? Define(JsonObject crd)
    {
        var spec = crd["spec"]!;
        string expected = $"{spec["names"]?["plural"]?.GetValue<string>()}.{spec["group"]?.GetValue<string>()}";
        string name = crd["metadata"]!["name"]!.GetValue<string>();
        if (name != expected)
            return Invalid(ResourceType.CustomResourceDefinitions, name, [("metadata.name", "FieldValueInvalid", $"metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group")]);
        types.AddRange(ResourceType.FromDefinition(crd));
        var now = Now();
        crd["status"] = new JsonObject
        {
            ["acceptedNames"] = spec["names"]!.DeepClone(),
            ["conditions"] = new JsonArray(
                new JsonObject { ["type"] = "NamesAccepted", ["status"] = "True", ["reason"] = "NoConflicts", ["message"] = "no conflicts found", ["lastTransitionTime"] = now },
                new JsonObject { ["type"] = "Established", ["status"] = "True", ["reason"] = "InitialNamesAccepted", ["message"] = "the initial names have been accepted", ["lastTransitionTime"] = now }),
            ["storedVersions"] = new JsonArray([.. (spec["versions"] as JsonArray ?? []).OfType<JsonObject>().Where(v => v["storage"]?.GetValue<bool>() == true).Select(v => (JsonNode)v["name"]!.GetValue<string>())]),
        };
        return null;
    }

    /// <summary>A deleted CRD takes its kinds and all their objects with it.</summary>
    void Undefine(JsonObject crd)
    {
        string group = crd["spec"]!["group"]!.GetValue<string>(), plural = crd["spec"]!["names"]!["plural"]!.GetValue<string>();
        foreach (var kind in types.Where(t => t.Group == group && t.Plural == plural).ToList())
        {
            foreach (var key in objects.Keys.Where(k => k.Kind == kind).ToList()) Remove(kind, key.Namespace, key.Name);
            types.Remove(kind);
        }
    }

    void Store(ResourceType kind, string ns, string name, JsonObject value, string type)
    {
        value["metadata"]!["resourceVersion"] = Version(++resourceVersion);
        objects[(kind, ns, name)] = value;
        Record(kind, value, type, bump: false);
        if (kind.Kind == "Deployment" && PodsReadyAfter is { } delay) _ = MarkReady(kind, ns, name, value["metadata"]!["generation"]!.GetValue<long>(), delay);
    }

    async Task MarkReady(ResourceType kind, string ns, string name, long generation, TimeSpan delay)
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
            next["metadata"]!["resourceVersion"] = Version(++resourceVersion);
            objects[(kind, ns, name)] = next;
            Record(kind, next, "MODIFIED", bump: false);
        }
    }

    void Record(ResourceType kind, JsonObject value, string type, bool bump = true)
    {
        if (bump) value["metadata"]!["resourceVersion"] = Version(++resourceVersion);
        var recorded = new Event(resourceVersion, type, kind, (JsonObject)value.DeepClone());
        history.Add(recorded);
        string? ns = value["metadata"]?["namespace"]?.GetValue<string>();
        foreach (var watch in watches.Where(w => w.Kind == kind && (w.Namespace is null || w.Namespace == ns) && w.Selector.Matches(value)))
            watch.Events.Writer.TryWrite(recorded);
    }

    // ---- the garbage collector ----

    async Task CollectGarbage(CancellationToken cancellation)
    {
        while (!cancellation.IsCancellationRequested)
        {
            await Task.Delay(GarbageCollectionPeriod, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
            lock (gate) CollectOnce();
        }
    }

    /// <summary>
    /// One pass of kube-controller-manager's garbage collector: dependents whose owners (by uid) are all gone
    /// are deleted (dangling references beside a live owner are dropped); an owner deleted in the foreground
    /// has its dependents deleted and loses its finalizer when none that blocks it is left; an orphaning owner
    /// has its references removed from its dependents first.
    /// </summary>
    void CollectOnce()
    {
        if (resourceVersion == collectedThrough) return; // nothing has changed since the last pass
        long seen = resourceVersion; // what this pass changes is looked at again by the next
        var uids = objects.Values.Select(o => o["metadata"]!["uid"]!.GetValue<string>()).ToHashSet();
        var dependentsOf = objects.SelectMany(o => References(o.Value).Select(r => (Owner: r["uid"]?.GetValue<string>() ?? "", o.Key))).ToLookup(d => d.Owner, d => d.Key);
        foreach (var (kind, ns, name) in objects.Keys.ToList())
        {
            if (!objects.TryGetValue((kind, ns, name), out var value)) continue; // an earlier step of this pass deleted it
            var metadata = value["metadata"]!;
            string uid = metadata["uid"]!.GetValue<string>();
            var finalizers = (metadata["finalizers"] as JsonArray ?? []).Select(f => f!.GetValue<string>()).ToList();
            List<((ResourceType Kind, string Namespace, string Name) Key, JsonObject Value)> Dependents() =>
                [.. dependentsOf[uid].Where(objects.ContainsKey).Select(k => (k, objects[k]))];
            if (metadata["deletionTimestamp"] is not null && finalizers.Contains("orphan"))
            {
                foreach (var ((dKind, dNs, dName), dependent) in Dependents())
                    Update(dKind, dNs, dName, dependent, d => d["metadata"]!["ownerReferences"] = new JsonArray([.. References(d).Where(r => r["uid"]?.GetValue<string>() != uid).Select(r => r.DeepClone())]));
                Update(kind, ns, name, value, o => o["metadata"]!["finalizers"] = new JsonArray([.. finalizers.Where(f => f != "orphan").Select(f => (JsonNode)f)]));
                continue;
            }
            if (metadata["deletionTimestamp"] is not null && finalizers.Contains("foregroundDeletion"))
            {
                foreach (var ((dKind, dNs, dName), _) in Dependents()) Delete(dKind, dNs, dName, "Foreground");
                bool blocked = Dependents().Any(d => References(d.Value).Any(r => r["uid"]?.GetValue<string>() == uid && r["blockOwnerDeletion"]?.GetValue<bool>() == true));
                if (!blocked && objects.TryGetValue((kind, ns, name), out var latest))
                    Update(kind, ns, name, latest, o => o["metadata"]!["finalizers"] = new JsonArray([.. finalizers.Where(f => f != "foregroundDeletion").Select(f => (JsonNode)f)]));
                continue;
            }
            var owners = References(value).ToList();
            if (owners.Count == 0) continue;
            var dangling = owners.Where(r => !uids.Contains(r["uid"]?.GetValue<string>() ?? "")).ToList();
            if (dangling.Count == owners.Count) Delete(kind, ns, name, "Background");
            else if (dangling.Count > 0)
                Update(kind, ns, name, value, o => o["metadata"]!["ownerReferences"] = new JsonArray([.. owners.Except(dangling).Select(r => r.DeepClone())]));
        }
        collectedThrough = seen;
    }

    static IEnumerable<JsonObject> References(JsonObject o) => (o["metadata"]?["ownerReferences"] as JsonArray ?? []).OfType<JsonObject>();

    /// <summary>A write by the garbage collector itself; an object whose last finalizer goes while it is being deleted is removed.</summary>
    void Update(ResourceType kind, string ns, string name, JsonObject current, Action<JsonObject> change)
    {
        var next = (JsonObject)current.DeepClone();
        change(next);
        foreach (var list in new[] { "finalizers", "ownerReferences" }) // empty lists are omitted, as the API's types omit them
            if (next["metadata"]![list] is JsonArray { Count: 0 }) ((JsonObject)next["metadata"]!).Remove(list);
        if (next["metadata"]!["deletionTimestamp"] is not null && next["metadata"]!["finalizers"] is null) Remove(kind, ns, name);
        else if (!JsonNode.DeepEquals(current, next)) Store(kind, ns, name, next, "MODIFIED");
    }

    // ---- watches ----

    async Task Watch(HttpContext context, ResourceType kind, string? ns)
    {
        var query = context.Request.Query;
        var selector = Selector.Parse(query["labelSelector"], query["fieldSelector"]);
        var channel = Channel.CreateUnbounded<Event>();
        string? from = query["resourceVersion"];
        bool bookmarks = query["allowWatchBookmarks"] == "true";
        bool gone = false;
        lock (gate)
        {
            if (string.IsNullOrEmpty(from) || from == "0")
            {
                // Without a resourceVersion a watch starts with the current state, as synthetic ADDED events.
                foreach (var o in objects.Where(o => o.Key.Kind == kind && (ns is null || o.Key.Namespace == ns) && selector.Matches(o.Value)))
                    channel.Writer.TryWrite(new Event(resourceVersion, "ADDED", kind, (JsonObject)o.Value.DeepClone()));
            }
            else if (!long.TryParse(from, CultureInfo.InvariantCulture, out long since)) throw new FormatException($"resourceVersion: Invalid value: \"{from}\"");
            else if (since <= compactedThrough) gone = true;
            else
                foreach (var e in history.Where(e => e.ResourceVersion > since && e.Kind == kind && selector.Matches(e.Object)
                             && (ns is null || e.Object["metadata"]?["namespace"]?.GetValue<string>() == ns)))
                    channel.Writer.TryWrite(e);
            if (!gone) watches.Add(new Watcher(kind, ns, selector, channel));
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
        if (int.TryParse(query["timeoutSeconds"], out int seconds)) timeout.CancelAfter(TimeSpan.FromSeconds(seconds));
        await context.Response.Body.FlushAsync(context.RequestAborted);
        try
        {
            var reader = channel.Reader;
            while (true)
            {
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token);
                if (bookmarks) wait.CancelAfter(BookmarkPeriod);
                bool more;
                try
                {
                    more = await reader.WaitToReadAsync(wait.Token);
                }
                catch (OperationCanceledException) when (!timeout.IsCancellationRequested)
                {
                    string version;
                    lock (gate) version = Version(resourceVersion);
                    await WriteLine(context, new JsonObject
                    {
                        ["type"] = "BOOKMARK",
                        ["object"] = new JsonObject { ["kind"] = kind.Kind, ["apiVersion"] = kind.ApiVersion, ["metadata"] = new JsonObject { ["resourceVersion"] = version } },
                    });
                    continue;
                }
                if (!more) break;
                while (reader.TryRead(out var e))
                    await WriteLine(context, new JsonObject { ["type"] = e.Type, ["object"] = e.Object.DeepClone() });
            }
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

    /// <summary>A request body as JSON; an apply patch may also be YAML, as kubectl's server-side apply may send.</summary>
    static async Task<JsonObject> ReadJson(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body);
        string text = await reader.ReadToEndAsync();
        if (text.TrimStart().StartsWith('{')) return JsonNode.Parse(text) as JsonObject ?? throw new BadHttpRequestException("the body is not a JSON object");
        if ((context.Request.ContentType ?? "").Contains("yaml", StringComparison.Ordinal) && YamlJson.Documents(text) is [var document]) return document;
        throw new BadHttpRequestException("the body is not a JSON object");
    }

    static async Task Respond(HttpContext context, Answer answer)
    {
        context.Response.StatusCode = answer.Code;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(answer.Body.ToJsonString());
    }

    public async ValueTask DisposeAsync()
    {
        await stopping.CancelAsync();
        await collector;
        DropWatches();
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
