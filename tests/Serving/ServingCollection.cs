using Adaptive.Tests.Support;

[assembly: AssemblyFixture(typeof(TestModels))]

namespace Adaptive.Tests.Serving;

/// <summary>
/// Serving tests measure real latency on a 2-core machine: they run one at a time, with no other test
/// competing for the cores, so that the timing behaviour they check is the server's.
/// </summary>
[CollectionDefinition("serving", DisableParallelization = true)]
public sealed class ServingCollection;
