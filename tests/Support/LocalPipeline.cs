using Adaptive.Core.Routing;
using Adaptive.ModelServer.Routing;

namespace Adaptive.Tests.Support;

/// <summary>
/// A one-stage pipeline on loopback, as a cluster would run it: a real model server (the zoo's 32×32
/// ResNet-18 as stage "classify") behind a real router that exports the pipeline's arrival counter.
/// </summary>
public sealed class LocalPipeline : IAsyncDisposable
{
    readonly string directory;

    public RunningServer Server { get; }
    public RunningServer Router { get; }
    public string Name { get; }

    LocalPipeline(string name, RunningServer server, RunningServer router, string directory)
    {
        (Name, Server, Router, this.directory) = (name, server, router, directory);
    }

    /// <param name="sloMs">The pipeline's SLO in the router's configuration, if any.</param>
    public static async Task<LocalPipeline> Start(TestModels models, string name, double? sloMs = null)
    {
        var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxQueueDelayMs: 1));
        string directory = Directory.CreateTempSubdirectory("adaptive-router-").FullName;
        string routes = Path.Combine(directory, "routes.json");
        File.WriteAllText(routes, new RouterConfig(name, [new StageRoute("classify", [new VariantRoute("resnet18", server.Address.ToString(), 1)])], sloMs).Write());
        var router = await RunningServer.StartRouter(new RouterOptions(RunningServer.Http(), routes, TimeSpan.FromSeconds(1), 256));
        return new LocalPipeline(name, server, router, directory);
    }

    /// <summary>Sends one image through the pipeline.</summary>
    public Task<HttpResponseMessage> Send(TestModels models, CancellationToken cancellation) =>
        Router.Client.PostAsync($"/v2/models/{Name}/infer", V2.Json(V2.Request("input", [1, 3, TestModels.Resolution, TestModels.Resolution], models.Images(1, 2))), cancellation);

    public async ValueTask DisposeAsync()
    {
        await Router.DisposeAsync();
        await Server.DisposeAsync();
        Directory.Delete(directory, recursive: true);
    }
}
