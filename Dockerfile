# syntax=docker/dockerfile:1
# Images of Adaptive, one target each:
#   docker build --target operator          -t adaptive-operator .
#   docker build --target model-server      -t adaptive-server .
#   docker build --target model-server-zoo  -t adaptive-server:zoo .      # with the ResNet zoo in /models
#   docker build --target model-server --build-arg GPU=true \
#       --build-arg MODEL_SERVER_BASE=<an image with CUDA 12, cuDNN 9 and the ASP.NET Core 10 runtime> -t adaptive-server:gpu .
# The build restores and publishes exactly the projects CI builds (Release, linux-x64).

ARG MODEL_SERVER_BASE=mcr.microsoft.com/dotnet/aspnet:10.0

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ARG GPU=false
WORKDIR /src
# Project files first, so that the restore layer is reused while only sources change.
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY core/Adaptive.Core.csproj core/
COPY model-server/Adaptive.ModelServer.csproj model-server/
COPY operator/Adaptive.Operator.csproj operator/
COPY experiments/Adaptive.Experiments.csproj experiments/
RUN dotnet restore operator/Adaptive.Operator.csproj -r linux-x64 \
 && dotnet restore model-server/Adaptive.ModelServer.csproj -r linux-x64 -p:Gpu=${GPU} \
 && dotnet restore experiments/Adaptive.Experiments.csproj -r linux-x64
COPY core/ core/
COPY model-server/ model-server/
COPY operator/ operator/
COPY experiments/ experiments/

FROM build AS publish-operator
RUN dotnet publish operator/Adaptive.Operator.csproj -c Release -r linux-x64 --self-contained false --no-restore -o /out

FROM build AS publish-model-server
ARG GPU=false
RUN dotnet publish model-server/Adaptive.ModelServer.csproj -c Release -r linux-x64 --self-contained false --no-restore -p:Gpu=${GPU} -o /out

FROM build AS zoo
RUN dotnet run --project experiments/Adaptive.Experiments.csproj -c Release -r linux-x64 --no-restore -- zoo --out /models

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS operator
WORKDIR /app
COPY --from=publish-operator /out .
USER 10001:10001
ENTRYPOINT ["dotnet", "adaptive-operator.dll"]

FROM ${MODEL_SERVER_BASE} AS model-server
WORKDIR /app
COPY --from=publish-model-server /out .
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["dotnet", "adaptive-server.dll"]
CMD ["serve"]

FROM model-server AS model-server-zoo
COPY --from=zoo /models /models
