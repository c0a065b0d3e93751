using Adaptive.ModelServer.Backend;

namespace Adaptive.Tests.Serving;

public sealed class RuntimeOptionsTests
{
    /// <summary>
    /// 0 intra-op threads is one per CPU the process may use, as .NET counts them (affinity and the
    /// container's CPU limit), never handed to ONNX Runtime as 0: its own default counts the machine's
    /// physical cores and ran ResNet-18 on one thread of a 2-vCPU VM.
    /// </summary>
    [Fact]
    public void Zero_intra_op_threads_is_one_per_usable_cpu()
    {
        var runtime = new RuntimeOptions(0, 1, Device.Cpu);
        Assert.Equal(Environment.ProcessorCount, runtime.EffectiveIntraOpThreads);
        using var session = OnnxModel.CreateSessionOptions(runtime);
        Assert.Equal(Environment.ProcessorCount, session.IntraOpNumThreads);

        using var three = OnnxModel.CreateSessionOptions(runtime with { IntraOpThreads = 3 });
        Assert.Equal(3, three.IntraOpNumThreads);
    }
}
