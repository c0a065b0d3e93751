using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Adaptive.Experiments.Live;
using Adaptive.ModelServer.Storage;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// <c>fetch-model</c> with s3:// URIs: the signature against AWS's published example, and the download against a
/// real S3-compatible server (s3rver from npm, which <c>./test.sh</c> installs into tools/s3rver) holding a zoo model
/// uploaded by curl's own SigV4 client.
/// </summary>
[Collection("serving")]
public sealed class S3FetchTests(TestModels models) : IAsyncLifetime
{
    static readonly string S3rver = RepoPaths.Of("tools", "s3rver", "node_modules", "s3rver", "bin", "s3rver.js");
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-s3-").FullName;
    Process? store;
    int port;

    /// <summary>AWS's example of a signed GET (Signature Version 4 for S3, "GET Object"): the same header, to the character.</summary>
    [Fact]
    public void The_signature_is_aws_published_example()
    {
        var headers = new Dictionary<string, string>
        {
            ["Host"] = "examplebucket.s3.amazonaws.com",
            ["Range"] = "bytes=0-9",
            ["x-amz-content-sha256"] = S3Signature.EmptyPayloadSha256,
            ["x-amz-date"] = S3Signature.AmzDate(new DateTimeOffset(2013, 5, 24, 0, 0, 0, TimeSpan.Zero)),
        };
        string authorization = S3Signature.Authorization("GET", "/test.txt", headers, new S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), "us-east-1");
        Assert.Equal("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", authorization);
    }

    public async ValueTask InitializeAsync()
    {
        if (!File.Exists(S3rver)) return;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        var start = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { S3rver, "-d", Path.Combine(directory, "store"), "-a", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--silent", "--configure-bucket", "models" })
            start.ArgumentList.Add(arg);
        store = Process.Start(start)!;
        using var http = new HttpClient();
        for (int i = 0; i < 100; i++)
        {
            try
            {
                await http.GetAsync($"http://127.0.0.1:{port}/");
                return;
            }
            catch (HttpRequestException)
            {
                await Task.Delay(100);
            }
        }
        throw new TimeoutException("s3rver did not start within 10 s");
    }

    /// <summary>Puts the zoo's ResNet-18 at models/zoo/resnet18.onnx, signed by another SigV4 implementation than ours: curl's.</summary>
    void Upload()
    {
        using var upload = Process.Start(new ProcessStartInfo("curl", ["-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "S3RVER:S3RVER",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-T", models.ResNet18, $"http://127.0.0.1:{port}/models/zoo/resnet18.onnx"]) { RedirectStandardError = true })!;
        Assert.True(upload.WaitForExit(TimeSpan.FromSeconds(30)) && upload.ExitCode == 0, upload.StandardError.ReadToEnd());
    }

    static Dictionary<string, string> Store(int port, string accessKeyId = "S3RVER") => new()
    {
        ["AWS_ENDPOINT_URL"] = $"http://127.0.0.1:{port}",
        ["AWS_REGION"] = "us-east-1",
        ["AWS_ACCESS_KEY_ID"] = accessKeyId,
        ["AWS_SECRET_ACCESS_KEY"] = "S3RVER",
    };

    [Fact]
    public void A_model_in_an_s3_compatible_store_is_fetched_and_checked()
    {
        Assert.SkipWhen(store is null, $"s3rver is not installed at {S3rver}: run ./test.sh, which installs it");
        Upload();

        string output = Path.Combine(directory, "model.onnx");
        string digest = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(models.ResNet18)));
        (int ExitCode, string Output) Fetch(string uri, Dictionary<string, string> environment, params string[] more) =>
            ServerProcess.Run(["fetch-model", "--uri", uri, "--out", output, .. more], environment);

        var fetched = Fetch("s3://models/zoo/resnet18.onnx", Store(port), "--sha256", digest);
        Assert.True(fetched.ExitCode == 0, fetched.Output);
        Assert.Equal(File.ReadAllBytes(models.ResNet18), File.ReadAllBytes(output));
        File.Delete(output);
        var withoutDigest = Fetch("s3://models/zoo/resnet18.onnx", Store(port)); // no digest given: none checked
        Assert.True(withoutDigest.ExitCode == 0, withoutDigest.Output);
        File.Delete(output);

        string wrong = Convert.ToHexStringLower(SHA256.HashData("another model"u8));
        var mismatch = Fetch("s3://models/zoo/resnet18.onnx", Store(port), "--sha256", wrong);
        Assert.Equal(1, mismatch.ExitCode);
        Assert.Contains($"s3://models/zoo/resnet18.onnx: its sha256 is {digest}, not the expected {wrong}", mismatch.Output);
        var missing = Fetch("s3://models/zoo/resnet152.onnx", Store(port));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("HTTP 404", missing.Output);
        var stranger = Fetch("s3://models/zoo/resnet18.onnx", Store(port, accessKeyId: "NOBODY"));
        Assert.Equal(1, stranger.ExitCode);
        Assert.Contains("HTTP 403", stranger.Output);
        var halfKeys = Fetch("s3://models/zoo/resnet18.onnx", new Dictionary<string, string> { ["AWS_ACCESS_KEY_ID"] = "S3RVER" });
        Assert.Equal(1, halfKeys.ExitCode);
        Assert.Contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together", halfKeys.Output);
        Assert.All(new[] { mismatch, missing, stranger, halfKeys }, r => Assert.Single(r.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Empty(Directory.GetFiles(directory, "model.onnx*"));
    }

    /// <summary>A store nobody answers at: one line naming the object and the connection's failure, nothing written.</summary>
    [Fact]
    public void An_unreachable_store_fails_in_one_line()
    {
        var result = ServerProcess.Run(["fetch-model", "--uri", "s3://models/zoo/resnet18.onnx", "--out", Path.Combine(directory, "model.onnx"), "--timeout-seconds", "20"],
            new Dictionary<string, string> { ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9", ["AWS_ACCESS_KEY_ID"] = "S3RVER", ["AWS_SECRET_ACCESS_KEY"] = "S3RVER" });
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("adaptive-server: fetch-model: s3://models/zoo/resnet18.onnx: ", result.Output);
        Assert.Single(result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Empty(Directory.GetFiles(directory, "model.onnx*"));
    }

    /// <summary>
    /// The operator's pod for an s3:// variant, run: its init container's command, with the pipeline's Secret as its
    /// environment, fetches the object into the volume, and the server's ADAPTIVE_MODEL names the file it left there.
    /// </summary>
    [Fact]
    public void The_operators_init_container_fetches_what_the_server_then_loads()
    {
        Assert.SkipWhen(store is null, $"s3rver is not installed at {S3rver}: run ./test.sh, which installs it");
        Upload();

        var pipeline = Adaptive.Experiments.Manifests.ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "resnet-mixed.yaml")));
        var variant = pipeline.Spec.Stages[0].Variants.Single(v => v.Name == "resnet18");
        (variant.ModelUri, variant.Sha256) = ("s3://models/zoo/resnet18.onnx", Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(models.ResNet18))));
        pipeline.Spec.ModelStorage = new Adaptive.Core.Api.V1Alpha1.ModelStorageSpec { SecretName = "model-store" };
        Adaptive.Core.Api.V1Alpha1.InferencePipelineValidator.Validate(pipeline);
        var plan = new Adaptive.Core.Planning.PipelinePlan(pipeline.Metadata.Name, null,
            [new Adaptive.Core.Planning.StagePlan("classify", [new Adaptive.Core.Planning.Allocation("resnet18", "cpu", 1, 1, 10)])]);
        var pod = Adaptive.Operator.Reconciliation.DesiredState.Allocations(pipeline, plan,
            new Adaptive.Operator.Reconciliation.WorkloadSettings("adaptive-server:test", TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(20))).Single().Deployment.Spec.Template.Spec;
        var init = Assert.Single(pod.InitContainers);
        Assert.Equal("model-store", Assert.Single(init.EnvFrom).SecretRef.Name);

        // The volume the init container writes and the server reads is a directory of the test's.
        string volume = Path.Combine(directory, "volume");
        Directory.CreateDirectory(volume);
        string Local(string path) => path.Replace("/mnt/model", volume, StringComparison.Ordinal);
        var fetched = ServerProcess.Run(init.Args.Select(Local), Store(port)); // the Secret's keys, as its environment
        Assert.True(fetched.ExitCode == 0, fetched.Output);
        string model = Local(pod.Containers[0].Env.Single(e => e.Name == "ADAPTIVE_MODEL").Value);
        Assert.Equal(File.ReadAllBytes(models.ResNet18), File.ReadAllBytes(model));
        using var loaded = Adaptive.ModelServer.Backend.OnnxModel.Load(model, new Adaptive.ModelServer.Backend.RuntimeOptions(1, 1, Adaptive.ModelServer.Backend.Device.Cpu), _ => { });
        Assert.Equal("input", Assert.Single(loaded.Inputs).Name);
    }

    public async ValueTask DisposeAsync()
    {
        if (store is not null)
        {
            store.Kill(entireProcessTree: true);
            await store.WaitForExitAsync();
            store.Dispose();
        }
        Directory.Delete(directory, recursive: true);
    }
}
