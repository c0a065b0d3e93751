using System.Net;
using System.Security.Cryptography;
using Adaptive.Experiments.Live;
using Adaptive.Tests.Kubernetes;
using Adaptive.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace Adaptive.Tests.Serving;

/// <summary>
/// <c>adaptive-server fetch-model</c>, the init container of a variant whose model is an https:// download, against
/// a real HTTPS server (a test CA's certificate): the file arrives only when its SHA-256 is the expected one, within
/// its size and time bounds, from a server whose certificate is trusted; every failure is one line and leaves no file.
/// </summary>
[Collection("serving")]
public sealed class ModelFetchTests(TestModels models) : IAsyncLifetime
{
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-fetch-").FullName;
    readonly ClusterCredentials credentials = new();
    WebApplication? server;
    string caFile = "";
    Uri address = null!;

    public async ValueTask InitializeAsync()
    {
        caFile = Path.Combine(directory, "ca.pem");
        await File.WriteAllTextAsync(caFile, credentials.Authority.ExportCertificatePem());
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.UseHttps(new HttpsConnectionAdapterOptions { ServerCertificate = credentials.ServerCertificate })));
        server = builder.Build();
        byte[] model = await File.ReadAllBytesAsync(models.ResNet18);
        server.MapGet("/models/resnet18.onnx", () => Results.File(model, "application/octet-stream"));
        server.MapGet("/models/stalling.onnx", async (HttpContext context) =>
        {
            context.Response.ContentLength = model.Length;
            await context.Response.Body.WriteAsync(model.AsMemory(0, 1024));
            await context.Response.Body.FlushAsync();
            await Task.Delay(TimeSpan.FromSeconds(20), context.RequestAborted); // until the client gives up
        });
        await server.StartAsync();
        address = new Uri(server.Urls.First());
    }

    string Sha256Of(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    (int ExitCode, string Output) Fetch(string file, string sha256, params string[] more) =>
        ServerProcess.Run(["fetch-model", "--uri", new Uri(address, $"/models/{file}").AbsoluteUri, "--sha256", sha256, "--out", Path.Combine(directory, "model.onnx"), .. more]);

    static void OneLine(string expected, (int ExitCode, string Output) result, int exitCode = 1)
    {
        Assert.Equal(exitCode, result.ExitCode);
        Assert.Contains(expected, result.Output);
        Assert.Single(result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void The_model_arrives_only_whole_and_with_its_digest()
    {
        string output = Path.Combine(directory, "model.onnx");
        string digest = Sha256Of(models.ResNet18);

        var fetched = Fetch("resnet18.onnx", digest, "--ca-file", caFile);
        Assert.True(fetched.ExitCode == 0, fetched.Output);
        Assert.Equal(File.ReadAllBytes(models.ResNet18), File.ReadAllBytes(output));
        File.Delete(output);

        string wrong = Convert.ToHexStringLower(SHA256.HashData("another model"u8));
        OneLine($"resnet18.onnx: its sha256 is {digest}, not the expected {wrong}", Fetch("resnet18.onnx", wrong, "--ca-file", caFile));
        OneLine("HTTP 404", Fetch("missing.onnx", digest, "--ca-file", caFile));
        OneLine("more than --max-bytes 4096", Fetch("resnet18.onnx", digest, "--ca-file", caFile, "--max-bytes", "4096"));
        OneLine("stalling.onnx: not downloaded within 1 s", Fetch("stalling.onnx", digest, "--ca-file", caFile, "--timeout-seconds", "1"));
        // Without the CA the server's certificate is not trusted: TLS is checked, not skipped.
        OneLine("fetch-model: https://127.0.0.1", Fetch("resnet18.onnx", digest));
        Assert.Empty(Directory.GetFiles(directory, "model.onnx*"));

        OneLine("--uri must be an https:// or s3:// URI, got 'http://127.0.0.1/models/resnet18.onnx'",
            ServerProcess.Run(["fetch-model", "--uri", "http://127.0.0.1/models/resnet18.onnx", "--sha256", digest, "--out", output]), exitCode: 2);
        OneLine("--sha256 is required for an https:// URI",
            ServerProcess.Run(["fetch-model", "--uri", new Uri(address, "/models/resnet18.onnx").AbsoluteUri, "--out", output]), exitCode: 2);
        OneLine("--sha256 must be 64 lowercase hexadecimal digits, got 'ABC'", Fetch("resnet18.onnx", "ABC"), exitCode: 2);
    }

    public async ValueTask DisposeAsync()
    {
        if (server is not null) await server.DisposeAsync();
        Directory.Delete(directory, recursive: true);
    }
}
