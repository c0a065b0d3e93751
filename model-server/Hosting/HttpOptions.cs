namespace Adaptive.ModelServer.Hosting;

/// <summary>What the server and the router share: where they listen, their limits, and how they drain.</summary>
/// <param name="MaxBodyBytes">Largest request body accepted; larger ones get 413.</param>
/// <param name="RequestTimeout">Deadline of every request, from its arrival.</param>
/// <param name="DrainDelay">After SIGTERM, how long the server keeps serving while readiness is false, so
/// that endpoints stop sending to it (Kubernetes removes a pod from its Service asynchronously).</param>
/// <param name="DrainTimeout">Then, the longest it waits for requests in flight before exiting.</param>
/// <param name="GrpcPort">The port of the Open Inference Protocol's gRPC service (HTTP/2 without TLS); null for none, 0 for any free one.</param>
public sealed record HttpOptions(string Host, int Port, long MaxBodyBytes, TimeSpan RequestTimeout, TimeSpan DrainDelay, TimeSpan DrainTimeout, int? GrpcPort = null)
{
    /// <summary>Logs to standard error rather than standard output: for a server inside a tool whose standard output is its result (the profiler's YAML).</summary>
    public bool LogsToStandardError { get; init; }
}
