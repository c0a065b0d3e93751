using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Protocol;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

public sealed class ThreadPinningPlanTests
{
    [Fact]
    public void The_caller_gets_the_first_cpu_and_each_worker_one_of_the_others()
    {
        var two = ThreadPinning.Plan(2, [0, 1], usableCpus: 2, out string? whyNot);
        Assert.Null(whyNot);
        Assert.Equal(0, two!.CallerCpu);
        Assert.Equal([1], two.WorkerCpus);
        Assert.Equal("2", two.WorkerAffinities); // ONNX Runtime numbers processors from 1

        var three = ThreadPinning.Plan(3, [2, 3, 5, 7], usableCpus: 4, out _);
        Assert.Equal(2, three!.CallerCpu);
        Assert.Equal([3, 5], three.WorkerCpus);
        Assert.Equal("4;6", three.WorkerAffinities);

        var one = ThreadPinning.Plan(1, [4, 5], usableCpus: 2, out _);
        Assert.Equal(4, one!.CallerCpu);
        Assert.Empty(one.WorkerCpus);
        Assert.Null(one.WorkerAffinities); // no workers: ONNX Runtime wants no entry then
    }

    [Fact]
    public void Shared_or_too_few_cpus_are_not_pinned_and_the_reason_says_why()
    {
        Assert.Null(ThreadPinning.Plan(2, [.. Enumerable.Range(0, 16)], usableCpus: 2, out string? shared));
        Assert.Contains("may run on 16 CPUs but use only 2", shared);
        Assert.Contains("static CPU manager", shared);

        Assert.Null(ThreadPinning.Plan(4, [0, 1], usableCpus: 2, out string? tooFew));
        Assert.Equal("4 intra-op threads need 4 CPUs, and this process has 2", tooFew);

        Assert.Null(ThreadPinning.Plan(2, null, usableCpus: 2, out string? notLinux));
        Assert.Contains("Linux only", notLinux);
    }
}

/// <summary>A real ONNX Runtime session with pinned threads, where this machine's CPUs allow it.</summary>
[Collection("serving")]
public sealed class ThreadPinningTests(TestModels models)
{
    /// <summary>
    /// ONNX Runtime's worker runs on its own CPU only; each call runs on the caller's CPU and then lets the
    /// calling thread go back to where it could run before; the outputs are those of an unpinned session.
    /// </summary>
    [Fact]
    public void A_pinned_session_puts_its_worker_and_each_call_on_their_own_cpus()
    {
        var allowed = CpuAffinity.Allowed();
        if (allowed is null) Assert.Skip("CPU affinity per thread is Linux's");
        if (allowed.Count < 2 || allowed.Count != Environment.ProcessorCount)
            Assert.Skip($"this process may run on {allowed.Count} CPUs and use {Environment.ProcessorCount}: it needs 2 or more of its own to pin 2 threads");

        var warnings = new List<string>();
        string workerCpu = allowed[1].ToString(System.Globalization.CultureInfo.InvariantCulture);
        int pinnedBefore = ThreadCpuLists.OfThisProcess().Count(list => list == workerCpu);
        using var pinned = OnnxModel.Load(models.ResNet18, new RuntimeOptions(2, 1, Device.Cpu, PinThreads: true), warnings.Add);
        Assert.Empty(warnings);
        Assert.Equal(allowed[0], pinned.Pinning!.CallerCpu);
        Assert.Equal([allowed[1]], pinned.Pinning.WorkerCpus);
        Assert.True(ThreadCpuLists.OfThisProcess().Count(list => list == workerCpu) > pinnedBefore, $"a thread of ONNX Runtime runs on CPU {workerCpu} only");

        Assert.Equal([allowed[0]], pinned.Pinning.Run(CpuAffinity.Allowed));
        var request = new InferRequest(null, [new Tensor("input", TensorDataType.Fp32, [1, 3, TestModels.Resolution, TestModels.Resolution], models.Images(1, seed: 5))], null);
        var output = (float[])pinned.Run([request])[0][0].Data;
        Assert.Equal(allowed, CpuAffinity.Allowed());

        using var unpinned = OnnxModel.Load(models.ResNet18, new RuntimeOptions(2, 1, Device.Cpu), _ => { });
        Assert.Null(unpinned.Pinning);
        var expected = (float[])unpinned.Run([request])[0][0].Data;
        for (int k = 0; k < expected.Length; k++) Assert.Equal(expected[k], output[k], 4);
    }

    /// <summary>Asked for more threads than the process has CPUs, the model loads unpinned and says why.</summary>
    [Fact]
    public void Too_many_threads_to_pin_load_unpinned_with_a_warning()
    {
        var warnings = new List<string>();
        using var model = OnnxModel.Load(models.ResNet18, new RuntimeOptions(Environment.ProcessorCount + 1, 1, Device.Cpu, PinThreads: true), warnings.Add);
        Assert.Null(model.Pinning);
        Assert.Contains(warnings, w => w.StartsWith("intra-op threads not pinned: ", StringComparison.Ordinal));
    }
}
