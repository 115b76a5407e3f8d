"""Review and audit: the story of a coordination, its picture, its offline report, its
integrity re-check, and the admins' import of traces recorded elsewhere."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from coordination import integrity, review, swimlane
from coordination.importer import ImportRefused, import_trace
from coordination.models import Coordination
from coordination.views.access import ConsoleRequest, require_perm

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def _coordination(key: str) -> Coordination:
    return get_object_or_404(Coordination, key=key)


def review_context(coordination: Coordination, filters: review.ReviewFilters) -> dict:
    story = review.story(coordination)
    steps = filters.apply(story.steps)
    return {
        "coordination": coordination,
        "story": story,
        "steps": steps,
        "filters": filters,
        "picture": swimlane.render(story.lanes, steps),
        "nav": "coordinations",
    } | integrity.page_context(coordination)


@require_GET
@require_perm("watch")
def review_page(request: ConsoleRequest, key: str) -> HttpResponse:
    """The story, the picture and the filters; the filters live in the URL (a GET form)."""
    filters = review.ReviewFilters.from_query(request.GET)
    context = review_context(_coordination(key), filters)
    return render(request, "coordination/review/review.html", context)


@require_GET
@require_perm("watch")
def review_report(request: ConsoleRequest, key: str) -> HttpResponse:
    """One self-contained HTML file: inline CSS and SVG, no script, every step."""
    coordination = _coordination(key)
    context = review_context(coordination, review.ReviewFilters())
    context["generated_at"] = timezone.now()
    context["generated_by"] = request.user.get_username()
    html = render_to_string("coordination/review/report.html", context)
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in coordination.key)[:100]
    response["Content-Disposition"] = f'attachment; filename="review-{name}.html"'
    return response


@require_POST
@require_perm("watch")
def reverify(request: ConsoleRequest, key: str) -> HttpResponse:
    """Re-hash the whole chain now (the cache would otherwise wait for its max age)."""
    coordination = _coordination(key)
    verdict = integrity.verdict_for(coordination, recheck=True)
    messages.info(request, f"Integrity re-verified: {verdict.text}")
    back = request.POST.get("back")
    if back == "review":
        return redirect("coordination-review", coordination.key)
    return redirect("coordination-detail", coordination.key)


class ImportForm(forms.Form):
    file = forms.FileField(
        label="Trace file",
        help_text="An LTP audit trace (JSON Lines with prev_hash/hash) or raw frames, one a line.",
    )


@require_http_methods(["GET", "POST"])
@require_perm("import_trace")
def import_page(request: ConsoleRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            if upload.size > MAX_UPLOAD_BYTES:
                raise ImportRefused(1, "the file is larger than 20 MiB")
            try:
                lines = upload.read().decode("utf-8-sig").splitlines()
            except UnicodeDecodeError:
                raise ImportRefused(1, "the file is not UTF-8 text") from None
            imported = import_trace(lines, filename=upload.name, user=request.user)
        except ImportRefused as refused:
            form.add_error("file", f"Refused, nothing imported: line {refused.line}: {refused.why}")
        else:
            messages.success(
                request,
                f"Imported {upload.name} as {imported.coordination.key}: {imported.verdict.text}",
            )
            return redirect("coordination-detail", imported.coordination.key)
    return render(
        request, "coordination/review/import.html", {"form": form, "nav": "coordinations"}
    )
