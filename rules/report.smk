# Figures (SVG + PNG, registered for `snakemake --report`), report sections and the
# standalone offline page results/report/index.html.  Other rules files add sections with
# add_report_section(lambda: [...json files...]) (format: actpat.report.html docstring).


rule analysis_figures:
    input:
        density="results/analysis/{model}/density.parquet",
        similarity="results/analysis/{model}/similarity.parquet",
        relevance="results/analysis/{model}/relevance.parquet",
        relevance_json="results/analysis/{model}/relevance.json",
        findings="results/analysis/{model}/findings.json",
    output:
        density_svg=figure(
            "results/report/{model}/density.svg",
            "density",
            "Finding 1: activation density",
        ),
        density_png=figure(
            "results/report/{model}/density.png",
            "density",
            "Finding 1: activation density",
        ),
        similarity_svg=figure(
            "results/report/{model}/similarity.svg",
            "similarity",
            "Finding 2: cross-domain similarity",
        ),
        similarity_png=figure(
            "results/report/{model}/similarity.png",
            "similarity",
            "Finding 2: cross-domain similarity",
        ),
        similarity_profile_svg=figure(
            "results/report/{model}/similarity_profile.svg",
            "similarity_profile",
            "Finding 2: cross-domain similarity",
        ),
        similarity_profile_png=figure(
            "results/report/{model}/similarity_profile.png",
            "similarity_profile",
            "Finding 2: cross-domain similarity",
        ),
        relevance_svg=figure(
            "results/report/{model}/relevance.svg",
            "relevance",
            "Finding 3: relevance map",
        ),
        relevance_png=figure(
            "results/report/{model}/relevance.png",
            "relevance",
            "Finding 3: relevance map",
        ),
        relevance_scatter_svg=figure(
            "results/report/{model}/relevance_scatter.svg",
            "relevance_scatter",
            "Finding 3: relevance map",
        ),
        relevance_scatter_png=figure(
            "results/report/{model}/relevance_scatter.png",
            "relevance_scatter",
            "Finding 3: relevance map",
        ),
        section="results/report/sections/analysis-{model}.json",
    log:
        "logs/analysis_figures/{model}.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        code=script_code("analysis_figures.py"),
        text_domains=TEXT_DOMAINS,
        pairs=config["similarity"].get("pairs"),
    script:
        "../scripts/analysis_figures.py"


rule report_html:
    input:
        lambda w: report_sections(),
    output:
        "results/report/index.html",
    log:
        "logs/report_html/report_html.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=2048,
        runtime=10,
    params:
        code=script_code("report_html.py"),
        title=config["report"]["title"],
        subtitle=lambda w: f"models: {', '.join(MODELS)}; domains: {', '.join(DOMAINS)}",
    script:
        "../scripts/report_html.py"


rule summary:
    input:
        findings=expand("results/analysis/{model}/findings.json", model=MODELS),
        pruning=lambda w: (
            [
                "results/tables/pruning_summary.parquet",
                "results/tables/pruning_comparisons.parquet",
            ]
            if config["prune"]["enabled"]
            else []
        ),
        sts=expand(
            "results/sts/{model}/{pairset}.spearman.parquet",
            model=MODELS,
            pairset=PAIRSETS,
        ),
    output:
        "results/summary.md",
    log:
        "logs/summary/summary.log",
    localrule: True
    conda:
        "../envs/actpat.yaml"
    resources:
        mem_mb=1024,
        runtime=5,
    params:
        code=script_code("summary.py"),
    script:
        "../scripts/summary.py"


add_report_section(
    lambda: expand("results/report/sections/analysis-{model}.json", model=MODELS)
)


add_targets(lambda: ["results/report/index.html", "results/summary.md"])
