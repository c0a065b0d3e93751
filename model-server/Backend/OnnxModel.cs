using System.Diagnostics;
using System.Runtime.InteropServices;
using Adaptive.ModelServer.Protocol;
using Microsoft.ML.OnnxRuntime;
using TensorElementType = Microsoft.ML.OnnxRuntime.Tensors.TensorElementType;
using SessionOptions = Microsoft.ML.OnnxRuntime.SessionOptions;

namespace Adaptive.ModelServer.Backend;

/// <summary>Where a model runs. <c>Auto</c> takes CUDA when the runtime has it and falls back to the CPU.</summary>
public enum Device { Auto, Cpu, Cuda }

/// <summary>The device asked for cannot run the model here.</summary>
public sealed class DeviceUnavailableException(string message) : Exception(message);

/// <param name="IntraOpThreads">ONNX Runtime's threads within an operator; 0 for one per CPU this process
/// may use. Not ONNX Runtime's own 0, which counts the machine's physical cores and pins its threads to
/// them (its threading guide): that ignores a pod's CPU limit, and on a 2-vCPU VM it ran ResNet-18 on
/// one thread, at half speed.</param>
/// <param name="PinThreads">Give each intra-op thread a CPU of its own (<see cref="ThreadPinning"/>): only
/// for a replica whose CPUs are its own; elsewhere the model loads unpinned, with a warning.</param>
public sealed record RuntimeOptions(int IntraOpThreads, int InterOpThreads, Device Device, bool PinThreads = false)
{
    /// <summary>The intra-op threads a session gets: <see cref="IntraOpThreads"/>, or one per usable CPU for 0.</summary>
    public int EffectiveIntraOpThreads => IntraOpThreads > 0 ? IntraOpThreads : Environment.ProcessorCount;
}

/// <summary>
/// One ONNX model in an ONNX Runtime session: the backend the batcher calls with whole batches.
/// Requests of a batch are concatenated along the first (batch) dimension, run once, and the
/// outputs split back by rows.
/// </summary>
public sealed class OnnxModel : IDisposable
{
    readonly InferenceSession session;
    readonly string[] inputNames;
    readonly string[] outputNames;
    /// <summary>
    /// The inputs of stacked batches (8 images of 224×224 take 4.8 MB), reused from one call to the next:
    /// one array per batch size in use, up to 64 MB.
    /// </summary>
    readonly TensorArrayPool stackedInputs = new(64L << 20);

    public IReadOnlyList<TensorSpec> Inputs { get; }
    public IReadOnlyList<TensorSpec> Outputs { get; }
    /// <summary>True when every input and output has a dynamic first dimension, so requests can be stacked.</summary>
    public bool SupportsBatching { get; }
    public string ExecutionProvider { get; }
    public TimeSpan LoadTime { get; }
    /// <summary>The CPUs of the intra-op threads; null when they are not pinned.</summary>
    public ThreadPinning? Pinning { get; }
    /// <summary>The session itself, for the benchmark's raw baseline (<c>adaptive bench server</c>).</summary>
    internal InferenceSession Session => session;

    /// <summary>Runs a session call on the caller's CPU when the threads are pinned; the benchmark's raw baseline calls it too.</summary>
    internal T OnPinnedCpu<T>(Func<T> call) => Pinning is null ? call() : Pinning.Run(call);
    /// <summary>The model's custom metadata (ONNX metadata_props).</summary>
    public IReadOnlyDictionary<string, string> Metadata => session.ModelMetadata.CustomMetadataMap;

    OnnxModel(InferenceSession session, string executionProvider, TimeSpan loadTime, ThreadPinning? pinning)
    {
        this.session = session;
        Pinning = pinning;
        ExecutionProvider = executionProvider;
        LoadTime = loadTime;
        Inputs = [.. session.InputMetadata.Select(kv => Spec(kv.Key, kv.Value))];
        Outputs = [.. session.OutputMetadata.Select(kv => Spec(kv.Key, kv.Value))];
        inputNames = [.. Inputs.Select(i => i.Name)];
        outputNames = [.. Outputs.Select(o => o.Name)];
        SupportsBatching = Inputs.Concat(Outputs).All(s => s.Shape.Length > 0 && s.Shape[0] < 0);
    }

    public static OnnxModel Load(string path, RuntimeOptions runtime, Action<string> warn)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"model file {path} does not exist", path);
        var started = Stopwatch.GetTimestamp();
        ThreadPinning? pinning = null;
        if (runtime.PinThreads)
        {
            pinning = ThreadPinning.Plan(runtime.EffectiveIntraOpThreads, CpuAffinity.Allowed(), Environment.ProcessorCount, out string? whyNot);
            if (pinning is null) warn($"intra-op threads not pinned: {whyNot}");
        }
        using var options = CreateSessionOptions(runtime, pinning);
        string provider = "CPUExecutionProvider";
        if (runtime.Device != Device.Cpu)
        {
            try
            {
                options.AppendExecutionProvider_CUDA(0);
                provider = "CUDAExecutionProvider";
            }
            catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException)
            {
                // A replica planned with GPU profiles must not serve at CPU speed while all looks well.
                if (runtime.Device == Device.Cuda)
                    throw new DeviceUnavailableException($"--device cuda: no usable CUDA execution provider ({e.Message.Split('\n')[0]}); run the GPU image on a GPU node, or pass --device auto to fall back to the CPU");
                warn($"no CUDA execution provider ({e.Message.Split('\n')[0]}); running on the CPU");
            }
        }
        InferenceSession session;
        try
        {
            session = new InferenceSession(path, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"{path} is not a model ONNX Runtime can load: {e.Message}", e);
        }
        var model = new OnnxModel(session, provider, Stopwatch.GetElapsedTime(started), pinning);
        var unsupported = session.InputMetadata.Concat(session.OutputMetadata).Where(kv => ToDataType(kv.Value) is null).Select(kv => kv.Key).ToList();
        if (unsupported.Count > 0)
        {
            model.Dispose();
            throw new InvalidDataException($"{path}: tensors {string.Join(", ", unsupported)} have element types this server does not serve ({TensorDataTypes.Supported})");
        }
        return model;
    }

    /// <summary>The CPU session settings of a replica; the benchmark's raw baseline uses the same.</summary>
    public static SessionOptions CreateSessionOptions(RuntimeOptions runtime, ThreadPinning? pinning = null)
    {
        var options = new SessionOptions
        {
            IntraOpNumThreads = runtime.EffectiveIntraOpThreads,
            InterOpNumThreads = runtime.InterOpThreads,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        // The intra-op workers spin within a call, between its operators, but not after it: otherwise they
        // spin on for tens of milliseconds after each call, taking a core from the next request's HTTP work
        // and spending a pod's CPU limit on waiting (IdleServerTests).
        options.AddSessionConfigEntry("session.force_spinning_stop", "1");
        if (pinning?.WorkerAffinities is { } affinities) options.AddSessionConfigEntry("session.intra_op_thread_affinities", affinities);
        return options;
    }

    /// <summary>
    /// Checks what a request asks of the model as a whole (each input was checked against the
    /// <see cref="InputContract"/> as it was read): every input once, the same rows in all, known outputs.
    /// Throws a 400 naming the problem.
    /// </summary>
    public void Validate(InferRequest request)
    {
        var names = request.Inputs.Select(i => i.Name).ToList();
        var duplicate = names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw Bad($"input '{duplicate.Key}' is given more than once");
        var missing = inputNames.Except(names).ToList();
        if (missing.Count > 0) throw Bad($"missing input{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(m => $"'{m}'"))}");
        long rows = request.Inputs[0].Rows;
        if (rows < 1) throw Bad("the batch dimension (the first of the shape) must be at least 1");
        if (request.Inputs.Any(i => i.Rows != rows)) throw Bad("all inputs must have the same batch size (first dimension)");
        foreach (var output in request.RequestedOutputs ?? [])
            if (!outputNames.Contains(output.Name)) throw Bad($"unknown output '{output.Name}'; the model's outputs are {string.Join(", ", outputNames)}");
        var repeated = request.RequestedOutputs?.GroupBy(o => o.Name).FirstOrDefault(g => g.Count() > 1);
        if (repeated is not null) throw Bad($"output '{repeated.Key}' is requested more than once");
    }

    /// <summary>Runs a batch of validated requests with one session call (one per request if the model cannot batch).</summary>
    public IReadOnlyList<IReadOnlyList<Tensor>> Run(IReadOnlyList<InferRequest> batch)
    {
        if (!SupportsBatching || batch.Count == 1) return [.. batch.Select(r => RunStacked([r])[0])];
        return RunStacked(batch);
    }

    IReadOnlyList<IReadOnlyList<Tensor>> RunStacked(IReadOnlyList<InferRequest> batch)
    {
        long totalRows = batch.Sum(r => r.Rows);
        var inputValues = new List<OrtValue>(inputNames.Length);
        var pinned = new List<GCHandle>(inputNames.Length);
        List<(TensorDataType, Array)>? stacked = null; // only batches of several requests are stacked
        try
        {
            foreach (var spec in Inputs)
            {
                var parts = batch.Select(r => r.Inputs.First(i => i.Name == spec.Name)).ToList();
                long[] shape = [.. parts[0].Shape];
                if (shape.Length > 0) shape[0] = totalRows;
                var data = parts[0].Data;
                if (parts.Count > 1)
                {
                    data = Stack(spec.DataType, parts, Tensor.ElementCount(shape));
                    (stacked ??= []).Add((spec.DataType, data));
                }
                if (!spec.DataType.HasFixedSize())
                {
                    inputValues.Add(StringTensor((byte[][])data, shape));
                    continue;
                }
                // ONNX Runtime reads the array's bytes in place, as a tensor of the input's element type, for the call.
                var handle = GCHandle.Alloc(data, GCHandleType.Pinned);
                pinned.Add(handle);
                inputValues.Add(OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, ElementType(spec.DataType), shape,
                    handle.AddrOfPinnedObject(), Buffer.ByteLength(data)));
            }
            using var runOptions = new RunOptions();
            using var results = OnPinnedCpu(() => session.Run(runOptions, inputNames, inputValues, outputNames));
            var perRequest = batch.Select(_ => new List<Tensor>(outputNames.Length)).ToList();
            for (int o = 0; o < outputNames.Length; o++)
                Split(outputNames[o], Outputs[o].DataType, results[o], batch, totalRows, perRequest);
            return perRequest;
        }
        finally
        {
            foreach (var value in inputValues) value.Dispose();
            foreach (var handle in pinned) handle.Free();
            foreach (var (type, data) in stacked ?? []) stackedInputs.Return(type, data);
        }
    }

    /// <summary>The requests' rows of one input, one after another, in one array.</summary>
    Array Stack(TensorDataType type, List<Tensor> parts, long total)
    {
        // The batcher groups requests by shape; rows of other shapes would spill into a neighbour's.
        if (parts.Any(p => !p.Shape.AsSpan(1).SequenceEqual(parts[0].Shape.AsSpan(1))))
            throw new InvalidOperationException($"input '{parts[0].Name}': a batch of requests of different shapes ({string.Join(", ", parts.Select(p => Tensor.FormatShape(p.Shape)))})");
        var data = stackedInputs.Rent(type, total);
        long offset = 0;
        foreach (var part in parts)
        {
            Array.Copy(part.Data, 0, data, offset, part.Data.LongLength);
            offset += part.Data.LongLength;
        }
        return data;
    }

    /// <summary>Copies each request's rows of one output into its own tensor.</summary>
    static void Split(string name, TensorDataType type, OrtValue value, IReadOnlyList<InferRequest> batch, long totalRows, List<List<Tensor>> perRequest)
    {
        long[] shape = value.GetTensorTypeAndShape().Shape;
        if (batch.Count > 1 && (shape.Length == 0 || shape[0] != totalRows))
            throw new InvalidOperationException($"output '{name}' has shape {Tensor.FormatShape(shape)}, which does not keep the batch dimension {totalRows}");
        long rowElements = shape.Length == 0 || shape[0] == 0 ? 0 : Tensor.ElementCount(shape) / shape[0];
        long offset = 0;
        for (int r = 0; r < batch.Count; r++)
        {
            long rows = batch.Count == 1 && shape.Length > 0 ? shape[0] : batch[r].Rows;
            long[] partShape = [.. shape];
            if (partShape.Length > 0) partShape[0] = rows;
            long count = batch.Count == 1 ? Tensor.ElementCount(shape) : rows * rowElements;
            perRequest[r].Add(new Tensor(name, type, partShape, Slice(type, value, offset, count)));
            offset += count;
        }
    }

    /// <summary>A BYTES input as ONNX Runtime's string tensor: it keeps its own copy of each element.</summary>
    static OrtValue StringTensor(byte[][] elements, long[] shape)
    {
        var value = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, shape);
        for (int i = 0; i < elements.Length; i++) value.StringTensorSetElementAt(elements[i], i);
        return value;
    }

    /// <summary>Elements [offset, offset + count) of an output, copied byte for byte into an array of its type.</summary>
    static Array Slice(TensorDataType type, OrtValue value, long offset, long count)
    {
        if (!type.HasFixedSize())
            return Enumerable.Range(checked((int)offset), checked((int)count)).Select(i => value.GetStringElementAsSpan(i).ToArray()).ToArray();
        var array = type.NewArray(count);
        int size = type.ElementSize();
        value.GetTensorMutableRawData().Slice(checked((int)(offset * size)), checked((int)(count * size))).CopyTo(Tensor.BytesOf(array));
        return array;
    }

    /// <summary>The element types this server speaks, as ONNX Runtime names them.</summary>
    static readonly (TensorElementType Onnx, TensorDataType Protocol)[] ElementTypes =
    [
        (TensorElementType.Bool, TensorDataType.Bool), (TensorElementType.UInt8, TensorDataType.Uint8), (TensorElementType.UInt16, TensorDataType.Uint16),
        (TensorElementType.UInt32, TensorDataType.Uint32), (TensorElementType.UInt64, TensorDataType.Uint64), (TensorElementType.Int8, TensorDataType.Int8),
        (TensorElementType.Int16, TensorDataType.Int16), (TensorElementType.Int32, TensorDataType.Int32), (TensorElementType.Int64, TensorDataType.Int64),
        (TensorElementType.Float16, TensorDataType.Fp16), (TensorElementType.BFloat16, TensorDataType.Bf16), (TensorElementType.Float, TensorDataType.Fp32),
        (TensorElementType.Double, TensorDataType.Fp64), (TensorElementType.String, TensorDataType.Bytes),
    ];

    static TensorElementType ElementType(TensorDataType type) => ElementTypes.Single(t => t.Protocol == type).Onnx;

    static TensorSpec Spec(string name, NodeMetadata metadata) =>
        new(name, ToDataType(metadata) ?? TensorDataType.Fp32, [.. metadata.Dimensions.Select(d => (long)d)]);

    static TensorDataType? ToDataType(NodeMetadata metadata) =>
        !metadata.IsTensor ? null : ElementTypes.Where(t => t.Onnx == metadata.ElementDataType).Select(t => (TensorDataType?)t.Protocol).FirstOrDefault();

    static ProtocolException Bad(string message) => ProtocolException.Invalid(message);

    public void Dispose() => session.Dispose();
}
