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
        density_svg=report(
            "results/report/{model}/density.svg",
            caption="../report/density.rst",
            category="Finding 1: activation density",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "density", "format": "svg"},
        ),
        density_png=report(
            "results/report/{model}/density.png",
            caption="../report/density.rst",
            category="Finding 1: activation density",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "density", "format": "png"},
        ),
        similarity_svg=report(
            "results/report/{model}/similarity.svg",
            caption="../report/similarity.rst",
            category="Finding 2: cross-domain similarity",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "similarity", "format": "svg"},
        ),
        similarity_png=report(
            "results/report/{model}/similarity.png",
            caption="../report/similarity.rst",
            category="Finding 2: cross-domain similarity",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "similarity", "format": "png"},
        ),
        similarity_profile_svg=report(
            "results/report/{model}/similarity_profile.svg",
            caption="../report/similarity_profile.rst",
            category="Finding 2: cross-domain similarity",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "figure": "similarity_profile",
                "format": "svg",
            },
        ),
        similarity_profile_png=report(
            "results/report/{model}/similarity_profile.png",
            caption="../report/similarity_profile.rst",
            category="Finding 2: cross-domain similarity",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "figure": "similarity_profile",
                "format": "png",
            },
        ),
        relevance_svg=report(
            "results/report/{model}/relevance.svg",
            caption="../report/relevance.rst",
            category="Finding 3: relevance map",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "relevance", "format": "svg"},
        ),
        relevance_png=report(
            "results/report/{model}/relevance.png",
            caption="../report/relevance.rst",
            category="Finding 3: relevance map",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "relevance", "format": "png"},
        ),
        relevance_scatter_svg=report(
            "results/report/{model}/relevance_scatter.svg",
            caption="../report/relevance_scatter.rst",
            category="Finding 3: relevance map",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "figure": "relevance_scatter",
                "format": "svg",
            },
        ),
        relevance_scatter_png=report(
            "results/report/{model}/relevance_scatter.png",
            caption="../report/relevance_scatter.rst",
            category="Finding 3: relevance map",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "figure": "relevance_scatter",
                "format": "png",
            },
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
