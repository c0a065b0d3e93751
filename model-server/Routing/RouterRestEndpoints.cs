using System.Text.Json;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Protocol;

namespace Adaptive.ModelServer.Routing;

/// <summary>
/// The router's REST front end: the pipeline as one v2 model (metadata, readiness, inference), with
/// <c>Server-Timing</c> giving each stage's time.
/// </summary>
sealed class RouterRestEndpoints(PipelineForwarder forwarder) : IModelEndpoints
{
    public async Task Metadata(HttpContext context, string name, string? version)
    {
        var route = forwarder.Routes.Current;
        try
        {
            PipelineForwarder.CheckPipeline(route, name, version);
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            deadline.CancelAfter(forwarder.Options.Http.RequestTimeout);
            var metadata = await forwarder.Metadata(route, deadline.Token);
            await context.Response.WriteAsJsonAsync(metadata, context.RequestAborted);
        }
        catch (ProtocolException e)
        {
            await HttpHosting.WriteErrorAsync(context, HttpHosting.StatusOf(e.Kind), e.Message);
        }
        catch (PipelineFailure e)
        {
            await HttpHosting.WriteErrorAsync(context, e.StatusCode, e.Message, e.RetryAfter);
        }
    }

    public Task ModelReady(HttpContext context, Readiness readiness, string name, string? version)
    {
        try
        {
            PipelineForwarder.CheckPipeline(forwarder.Routes.Current, name, version);
        }
        catch (ProtocolException e)
        {
            return HttpHosting.WriteErrorAsync(context, HttpHosting.StatusOf(e.Kind), e.Message);
        }
        return Results.Json(new { name, ready = !readiness.IsDraining }, statusCode: readiness.IsDraining ? 503 : 200).ExecuteAsync(context);
    }

    public async Task Infer(HttpContext context, string name, string? version)
    {
        var route = forwarder.Routes.Current; // one configuration for the whole request
        try
        {
            PipelineForwarder.CheckPipeline(route, name, version);
        }
        catch (ProtocolException e)
        {
            await HttpHosting.RefuseBodyAsync(context, HttpHosting.StatusOf(e.Kind), e.Message);
            return;
        }
        try
        {
            var answer = await forwarder.Run(route, deadline => forwarder.ReadRequest(context, deadline), context.RequestAborted);
            var response = answer.Response;
            context.Response.Headers["Server-Timing"] = answer.ServerTiming;
            context.Response.ContentType = response.HeaderLength is null ? "application/json" : "application/octet-stream";
            if (response.HeaderLength is { } length) context.Response.Headers[InferRequestReader.HeaderLengthHeader] = length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            context.Response.ContentLength = response.Body.Length;
            await context.Response.Body.WriteAsync(response.Body, context.RequestAborted);
        }
        catch (PipelineFailure e) when (e.BodyUnread)
        {
            await HttpHosting.RefuseBodyAsync(context, e.StatusCode, e.Message, e.RetryAfter);
        }
        catch (PipelineFailure e)
        {
            await HttpHosting.WriteErrorAsync(context, e.StatusCode, e.Message, e.RetryAfter);
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
        {
            // the client went away: nobody to answer (counted by the forwarder)
        }
    }
}
